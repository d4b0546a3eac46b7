// SPDX-License-Identifier: GPL-2.0
/*
 * snp_dma_host: DMA of QEMU's edu device (1234:11e8) through the host
 * kernel's own DMA API behind the amd-iommu in SNP mode (snp-viommu's
 * snp-host-dma-test, issue 11: "the kernel's RMP is the IOMMU's RMP").
 *
 * The module binds edu, sets its 28-bit DMA mask and runs, in its probe:
 *
 *  ordinary   dma_map_page() and dma_alloc_coherent() of one 4K page each;
 *             edu writes 4096 bytes to the IOVA.  Hypervisor-owned RAM:
 *             the bytes must arrive.
 *  firmware   a page that the kernel made a firmware page the way ccp's
 *             rmp_mark_pages_firmware() does (rmp_make_private(pfn, 0,
 *             PG_LEVEL_4K, 0, true)), mapped with dma_map_page(); edu
 *             writes to it.  The page is lost on purpose (an immutable
 *             page goes back only through the PSP's SNP_PAGE_RECLAIM).
 *             With psp=1 the page comes from ccp's exported
 *             snp_alloc_firmware_page() instead (the PSP's SNP_INIT done:
 *             ccp and kvm_amd loaded first); it is kept too, so that QMP
 *             can look at it.
 *  2m         dma_alloc_coherent() of 2 MiB; edu writes 4096 bytes at
 *             offset 0x5000.  The module reports what the DMA API built
 *             (the IOVA, whether the pages are one 2M-aligned physically
 *             contiguous block, the domain's pgsize_bitmap) and the RMP
 *             entry of the region as Linux reads it (snp_lookup_rmpentry).
 *
 * For each it prints how many of the 4096 bytes arrived; the test script
 * decides what that means.  The DMA writes a pattern that edu first reads
 * from RAM into its 4K buffer at 0x40000 (docs/specs/edu.rst).
 */
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/dma-mapping.h>
#include <linux/iommu.h>
#include <linux/vmalloc.h>
#include <linux/delay.h>
#include <linux/cc_platform.h>
#include <linux/psp-sev.h>
#include <asm/sev.h>

#define DRV "snp_dma_host"

/* docs/specs/edu.rst: the DMA controller */
#define EDU_DMA_SRC	0x80
#define EDU_DMA_DST	0x88
#define EDU_DMA_CNT	0x90
#define EDU_DMA_CMD	0x98
#define EDU_CMD_RUN	0x1
#define EDU_CMD_TO_RAM	0x2	/* direction 1: from EDU to RAM */
#define EDU_BUF		0x40000
#define LEN		PAGE_SIZE

static void __iomem *bar;

static bool psp;
module_param(psp, bool, 0444);
MODULE_PARM_DESC(psp, "firmware page from ccp's snp_alloc_firmware_page");

static u8 pattern(unsigned int i)
{
	return (i % 251) + 1;	/* never 0: a page left zero matches nowhere */
}

static int edu_dma(struct pci_dev *pdev, u64 src, u64 dst, u64 cmd)
{
	int i;

	writeq(src, bar + EDU_DMA_SRC);
	writeq(dst, bar + EDU_DMA_DST);
	writeq(LEN, bar + EDU_DMA_CNT);
	writeq(cmd | EDU_CMD_RUN, bar + EDU_DMA_CMD);
	/* edu runs the transfer 100 ms (virtual) after the command */
	for (i = 0; i < 1000; i++) {
		if (!(readq(bar + EDU_DMA_CMD) & EDU_CMD_RUN))
			return 0;
		msleep(10);
	}
	pci_err(pdev, DRV ": edu DMA did not complete\n");
	return -ETIMEDOUT;
}

/* edu writes its buffer (the pattern) to @iova; the bytes at @cpu that
 * hold the pattern afterwards */
static int dma_to(struct pci_dev *pdev, dma_addr_t iova, const u8 *cpu)
{
	int i, n = 0;

	if (edu_dma(pdev, EDU_BUF, iova, EDU_CMD_TO_RAM))
		return -1;
	/* give the IOMMU's event interrupt time to be printed first */
	msleep(200);
	for (i = 0; i < LEN; i++)
		n += READ_ONCE(cpu[i]) == pattern(i);
	return n;
}

/* the PFN behind a kernel address: vmap (the DMA API's remap) or direct map */
static u64 cpu_pfn(const void *p)
{
	return is_vmalloc_addr(p) ? vmalloc_to_pfn(p) : PHYS_PFN(__pa(p));
}

static void rmp_show(const char *what, u64 pfn)
{
	bool assigned;
	int level, ret;

	ret = snp_lookup_rmpentry(pfn, &assigned, &level);
	if (ret)
		pr_info(DRV ": %s: pfn 0x%llx: snp_lookup_rmpentry failed: %d\n",
			what, pfn, ret);
	else
		/* enum pg_level: PG_LEVEL_4K 1, PG_LEVEL_2M 2 */
		pr_info(DRV ": %s: pfn 0x%llx: rmp assigned %d level %d\n",
			what, pfn, assigned, level);
}

static int test_ordinary(struct pci_dev *pdev)
{
	struct page *page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	dma_addr_t iova, h;
	void *cpu;
	int n;

	if (!page)
		return -ENOMEM;
	iova = dma_map_page(&pdev->dev, page, 0, LEN, DMA_FROM_DEVICE);
	if (dma_mapping_error(&pdev->dev, iova)) {
		__free_page(page);
		return -EIO;
	}
	n = dma_to(pdev, iova, page_address(page));
	dma_unmap_page(&pdev->dev, iova, LEN, DMA_FROM_DEVICE);
	pr_info(DRV ": ordinary dma_map_page: iova 0x%llx pfn 0x%lx: %d of %lu bytes arrived\n",
		(u64)iova, page_to_pfn(page), n, LEN);
	__free_page(page);

	cpu = dma_alloc_coherent(&pdev->dev, LEN, &h, GFP_KERNEL);
	if (!cpu)
		return -ENOMEM;
	n = dma_to(pdev, h, cpu);
	pr_info(DRV ": ordinary dma_alloc_coherent: iova 0x%llx pfn 0x%llx: %d of %lu bytes arrived\n",
		(u64)h, cpu_pfn(cpu), n, LEN);
	dma_free_coherent(&pdev->dev, LEN, cpu, h);
	return 0;
}

/* ccp's snp_alloc_firmware_page, without a module dependency on ccp */
static struct page *psp_firmware_page(void)
{
	void *(*alloc)(gfp_t) = symbol_get(snp_alloc_firmware_page);
	void *p;

	if (!alloc) {
		pr_err(DRV ": firmware: ccp's snp_alloc_firmware_page is not loaded\n");
		return NULL;
	}
	p = alloc(GFP_KERNEL | __GFP_ZERO);
	symbol_put(snp_alloc_firmware_page);
	if (!p)
		pr_err(DRV ": firmware: snp_alloc_firmware_page failed\n");
	return p ? virt_to_page(p) : NULL;
}

static int test_firmware(struct pci_dev *pdev)
{
	struct page *page;
	dma_addr_t iova;
	u64 pfn;
	int n, ret;

	if (psp) {
		page = psp_firmware_page();
		if (!page)
			return -ENOMEM;
		pr_info(DRV ": firmware: page from snp_alloc_firmware_page\n");
	} else {
		page = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!page)
			return -ENOMEM;
	}
	pfn = page_to_pfn(page);
	iova = dma_map_page(&pdev->dev, page, 0, LEN, DMA_FROM_DEVICE);
	if (dma_mapping_error(&pdev->dev, iova))
		return -EIO;	/* the page is leaked: it may be firmware's */
	/* drivers/crypto/ccp/sev-dev.c:rmp_mark_pages_firmware */
	ret = psp ? 0 : rmp_make_private(pfn, 0, PG_LEVEL_4K, 0, true);
	if (ret) {
		pr_err(DRV ": firmware: rmp_make_private(pfn 0x%llx) failed: %d\n",
		       pfn, ret);
		dma_unmap_page(&pdev->dev, iova, LEN, DMA_FROM_DEVICE);
		__free_page(page);
		return ret;
	}
	rmp_show("firmware", pfn);
	pr_info(DRV ": firmware: pfn 0x%llx is a firmware page, edu writes to iova 0x%llx\n",
		pfn, (u64)iova);
	n = dma_to(pdev, iova, page_address(page));	/* reads are not RMP-checked */
	dma_unmap_page(&pdev->dev, iova, LEN, DMA_FROM_DEVICE);
	pr_info(DRV ": firmware: iova 0x%llx pfn 0x%llx: %d of %lu bytes arrived\n",
		(u64)iova, pfn, n, LEN);
	/* leaked: immutable, only SNP_PAGE_RECLAIM gives it back */
	return 0;
}

static int test_2m(struct pci_dev *pdev)
{
	const unsigned long off = 0x5000;
	dma_addr_t h;
	u64 pfn0, phys;
	bool contig = true;
	void *cpu;
	int i, n;

	cpu = dma_alloc_coherent(&pdev->dev, SZ_2M, &h, GFP_KERNEL);
	if (!cpu) {
		pr_err(DRV ": 2m: dma_alloc_coherent(2M) failed\n");
		return -ENOMEM;
	}
	pfn0 = cpu_pfn(cpu);
	for (i = 1; i < SZ_2M / PAGE_SIZE; i++)
		if (cpu_pfn(cpu + i * PAGE_SIZE) != pfn0 + i)
			contig = false;
	phys = iommu_iova_to_phys(iommu_get_domain_for_dev(&pdev->dev),
				  h + off);
	pr_info(DRV ": 2m: dma_alloc_coherent(2M): iova 0x%llx pfn 0x%llx: iova 2M-aligned %d, pages one 2M-aligned contiguous block %d, iova+0x%lx -> phys 0x%llx\n",
		(u64)h, pfn0, IS_ALIGNED(h, SZ_2M),
		contig && IS_ALIGNED(pfn0, SZ_2M / PAGE_SIZE), off, phys);
	pr_info(DRV ": 2m: cpu+0x%lx is pfn 0x%llx\n", off, cpu_pfn(cpu + off));
	rmp_show("2m", pfn0);
	rmp_show("2m", (phys >> PAGE_SHIFT));
	n = dma_to(pdev, h + off, cpu + off);
	pr_info(DRV ": 2m: iova 0x%llx phys 0x%llx: %d of %lu bytes arrived\n",
		(u64)(h + off), phys, n, LEN);
	dma_free_coherent(&pdev->dev, SZ_2M, cpu, h);
	return 0;
}

static int snp_dma_host_probe(struct pci_dev *pdev,
			      const struct pci_device_id *id)
{
	struct iommu_domain *dom;
	struct page *src;
	dma_addr_t s;
	int ret;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	pci_set_master(pdev);
	bar = pcim_iomap(pdev, 0, 0);
	if (!bar)
		return -ENOMEM;
	/* edu.rst: 28 bits by default (dma_mask property) */
	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(28));
	if (ret)
		return ret;
	dom = iommu_get_domain_for_dev(&pdev->dev);
	pr_info(DRV ": %s: host SEV-SNP %d, IOMMU domain type 0x%x, pgsize_bitmap 0x%lx\n",
		pci_name(pdev), cc_platform_has(CC_ATTR_HOST_SEV_SNP),
		dom ? dom->type : 0, dom ? dom->pgsize_bitmap : 0);

	/* the pattern, read by edu into its buffer */
	src = alloc_page(GFP_KERNEL);
	if (!src)
		return -ENOMEM;
	for (ret = 0; ret < LEN; ret++)
		((u8 *)page_address(src))[ret] = pattern(ret);
	s = dma_map_page(&pdev->dev, src, 0, LEN, DMA_TO_DEVICE);
	if (dma_mapping_error(&pdev->dev, s)) {
		__free_page(src);
		return -EIO;
	}
	ret = edu_dma(pdev, s, EDU_BUF, 0);
	dma_unmap_page(&pdev->dev, s, LEN, DMA_TO_DEVICE);
	__free_page(src);
	if (ret)
		return ret;

	test_ordinary(pdev);
	if (cc_platform_has(CC_ATTR_HOST_SEV_SNP))
		test_firmware(pdev);
	else
		pr_info(DRV ": firmware: no host SEV-SNP\n");
	test_2m(pdev);
	pr_info(DRV ": done\n");
	return 0;
}

static const struct pci_device_id snp_dma_host_ids[] = {
	{ PCI_DEVICE(0x1234, 0x11e8) },	/* edu */
	{ }
};
MODULE_DEVICE_TABLE(pci, snp_dma_host_ids);

static struct pci_driver snp_dma_host_driver = {
	.name = DRV,
	.id_table = snp_dma_host_ids,
	.probe = snp_dma_host_probe,
};
module_pci_driver(snp_dma_host_driver);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("snp-viommu test: edu DMA through the SNP host's DMA API and IOMMU");
