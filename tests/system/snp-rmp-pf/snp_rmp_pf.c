// SPDX-License-Identifier: GPL-2.0
/*
 * snp_rmp_pf: provoke the host kernel's own RMP #PF report (snp-viommu's
 * snp-host-test).
 *
 * With host SEV-SNP enabled, the module takes one page, makes it a
 * firmware page the way drivers/crypto/ccp/sev-dev.c:rmp_mark_pages_firmware
 * does (rmp_make_private(pfn, gpa 0, PG_LEVEL_4K, asid 0, immutable true);
 * arch/x86/virt/svm/sev.c, exported GPL in 6.12 and 7.2), prints its PFN
 * and then writes to it through the direct map.  rmpupdate() has split the
 * direct map around the page to 4K first (adjust_direct_map), so the write
 * is a 4K host write to an assigned page: an RMP #PF (error code bit 31,
 * X86_PF_RMP).  Nothing handles it in kernel mode, so the kernel oopses in
 * insmod and arch/x86/mm/fault.c:show_fault_oops prints its report and the
 * RMP entry (snp_dump_hva_rmpentry).  The page is lost on purpose.
 *
 * Without host SNP (rmp_make_private fails with -ENODEV) it prints why and
 * does not load: the write would be an ordinary one.
 */
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/gfp.h>
#include <linux/cc_platform.h>
#include <asm/sev.h>

static int __init snp_rmp_pf_init(void)
{
	struct page *page;
	u64 pfn;
	int ret;

	if (!cc_platform_has(CC_ATTR_HOST_SEV_SNP)) {
		pr_err("snp_rmp_pf: no host SEV-SNP (CC_ATTR_HOST_SEV_SNP)\n");
		return -ENODEV;
	}

	page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!page)
		return -ENOMEM;
	pfn = page_to_pfn(page);

	ret = rmp_make_private(pfn, 0, PG_LEVEL_4K, 0, true);
	if (ret) {
		pr_err("snp_rmp_pf: rmp_make_private(pfn 0x%llx) failed: %d\n",
		       pfn, ret);
		__free_page(page);
		return ret;
	}

	pr_info("snp_rmp_pf: pfn 0x%llx is a firmware page, writing to it at %px\n",
		pfn, page_address(page));
	/* A plain store, no exception-table entry: the fault is an oops */
	WRITE_ONCE(*(volatile u64 *)page_address(page), 0x736e702d726d7066ULL);

	/* Reached only if the write did not fault */
	pr_err("snp_rmp_pf: pfn 0x%llx: the write did not fault\n", pfn);
	return -EIO;
}

module_init(snp_rmp_pf_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("snp-viommu test: an RMP #PF on a host write to a firmware page");
