/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * user_pages.bpf.h - reading a task's user memory through the kernel's direct map.
 *
 * bpf_probe_read_user() is the expensive part of an exec record: its fixed cost per call is
 * several times a kernel read's. The argv strings of a new process sit in ordinary pages that
 * the kernel also maps in its direct map (every page of RAM at a fixed offset): walking the
 * page tables of the new mm to that address and loading from it with bpf_rdonly_cast() is a
 * handful of plain loads, with no helper call at all.
 *
 * x86-64 with 4-level paging only, and only where the direct map is not randomized (no
 * CONFIG_RANDOMIZE_MEMORY, or KASLR off): the base used is the fixed one. That is not assumed
 * but checked, once per load, against the page tables themselves (kt_direct_map_ok()); until
 * the check has passed, and everywhere else (other architectures, 5-level paging, a randomized
 * base, a page that is not a plain present page), kt_user_read() says no and kt_copy_user()
 * reads with bpf_probe_read_user(). Needs bpf_rdonly_cast (Linux 6.2): where the kernel lacks it, libbpf
 * refuses the whole object, and the loader falls back to the compat build of the same source
 * (bpf/.output/compat/, built with KT_NO_KFUNCS), which reads argv with bpf_probe_read_user.
 */
#ifndef KTRAIL_USER_PAGES_BPF_H
#define KTRAIL_USER_PAGES_BPF_H

#if defined(__TARGET_ARCH_x86) && !defined(KT_NO_KFUNCS)

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

#define KT_DIRECT_MAP_BASE 0xffff888000000000ULL /* __PAGE_OFFSET_BASE_L4 */
#define KT_PTE_PRESENT 0x1ULL
#define KT_PTE_PSE 0x80ULL /* a 1 GiB (PUD) or 2 MiB (PMD) page, not a table */
#define KT_PTE_PHYS 0x000ffffffffff000ULL
/* MAX_PHYSMEM_BITS with 4-level paging. An entry whose address is beyond it (an encryption
 * bit set, or not a page-table entry at all) is never followed: every load below stays inside
 * the 64 TiB that the fixed layout gives the direct map. */
#define KT_PHYS_LIMIT (1ULL << 46)
#define KT_GIB (1ULL << 30)
#define KT_MIB2 (1ULL << 21)

/* The direct map's state, decided by the first exec that can tell: 0 unknown, 1 fixed base
 * confirmed, 2 not the fixed base (use bpf_probe_read_user for good). */
__u32 kt_direct_map_state = 0;

/* One 8-byte load from a kernel address: inline and fault-safe (a fault reads 0). */
static __always_inline __u64 kt_kload(__u64 addr)
{
	const struct pgprot *p = bpf_rdonly_cast((const void *)addr, bpf_core_type_id_kernel(struct pgprot));
	return p->pgprot;
}

/* mm->pgd as a number (the verifier allows no shifts or masks on a pointer). */
static __always_inline __u64 kt_pgd(struct mm_struct *mm)
{
	return kt_kload((__u64)&mm->pgd);
}

/* Entry `index` of the table at physical address `table`, 0 when the table is not one that
 * may be followed. */
static __always_inline __u64 kt_table_entry(__u64 entry, __u64 index)
{
	if (!(entry & KT_PTE_PRESENT) || (entry & KT_PTE_PHYS) >= KT_PHYS_LIMIT)
		return 0;
	return kt_kload(KT_DIRECT_MAP_BASE + (entry & KT_PTE_PHYS) + (index & 511) * 8);
}

/* Is the direct map at the fixed base? The pgd page is itself in the direct map: translate
 * its own address with the page tables, starting from its (trusted) top-level entry. With a
 * wrong base the second load reads some other page of RAM (or nothing), never a device, and
 * the 1 GiB entry it finds cannot translate back to the pgd's address. Pages of the direct map
 * not mapped with 1 GiB entries leave the question open for a later exec. */
static __always_inline bool kt_direct_map_ok(struct mm_struct *mm)
{
	__u32 state = kt_direct_map_state;
	if (state != 0)
		return state == 1;
	__u64 pgd = kt_pgd(mm);
	if (pgd < KT_DIRECT_MAP_BASE) { /* 5-level paging (or another layout); 0 tells nothing */
		if (pgd != 0)
			kt_direct_map_state = 2;
		return false;
	}
	__u64 pud = kt_table_entry(kt_kload(pgd + ((pgd >> 39) & 511) * 8), pgd >> 30);
	if ((pud & (KT_PTE_PRESENT | KT_PTE_PSE)) != (KT_PTE_PRESENT | KT_PTE_PSE))
		return false;
	__u64 phys = (pud & KT_PTE_PHYS & ~(KT_GIB - 1)) + (pgd & (KT_GIB - 1));
	kt_direct_map_state = phys == pgd - KT_DIRECT_MAP_BASE ? 1 : 2;
	return kt_direct_map_state == 1;
}

/* The user page holding `addr` in mm: its direct-map address in *kaddr and the address of the
 * entry that maps it in *slot (to check afterwards that it still maps the same page). */
static __always_inline bool kt_user_page(struct mm_struct *mm, __u64 addr, __u64 *kaddr, __u64 *slot)
{
	__u64 pgd = kt_pgd(mm);
	__u64 e = kt_kload(pgd + ((addr >> 39) & 511) * 8);
	e = kt_table_entry(e, addr >> 30); /* PUD entry */
	if (e & KT_PTE_PSE)
		return false;
	__u64 table = e & KT_PTE_PHYS;
	e = kt_table_entry(e, addr >> 21); /* PMD entry */
	if (!(e & KT_PTE_PRESENT) || (e & KT_PTE_PHYS) >= KT_PHYS_LIMIT)
		return false;
	if (e & KT_PTE_PSE) { /* a transparent huge page */
		*slot = KT_DIRECT_MAP_BASE + table + ((addr >> 21) & 511) * 8;
		*kaddr = KT_DIRECT_MAP_BASE + (e & KT_PTE_PHYS & ~(KT_MIB2 - 1)) + (addr & (KT_MIB2 - 1) & ~4095ULL);
		return true;
	}
	*slot = KT_DIRECT_MAP_BASE + (e & KT_PTE_PHYS) + ((addr >> 12) & 511) * 8;
	e = kt_kload(*slot); /* PTE */
	if (!(e & KT_PTE_PRESENT) || (e & KT_PTE_PHYS) >= KT_PHYS_LIMIT)
		return false;
	*kaddr = KT_DIRECT_MAP_BASE + (e & KT_PTE_PHYS);
	return true;
}

/* Copies len (<= max_len, a constant power of two >= 8) bytes of mm's user memory at addr into dst
 * as whole 8-byte words, the bytes after len in the last word zeroed. False when it can't (the
 * caller then reads with bpf_probe_read_user): nothing to rely on in dst then. Ranges that
 * cross into a second page are left to the caller too: rare for argv, and a one-page copy is
 * one load and store per word, which the verifier checks as a single path. */
static __always_inline bool kt_user_read(struct mm_struct *mm, char *dst, __u64 addr, __u64 len, __u32 max_len)
{
	if (len > 4096 - (addr & 4095) || !kt_direct_map_ok(mm))
		return false;
	__u64 src, slot;
	if (!kt_user_page(mm, addr, &src, &slot))
		return false;
	__u64 entry = kt_kload(slot);
	src += addr & 4095;
	for (__u32 i = 0; i < max_len / 8; i++) {
		__u64 off = (__u64)i * 8;
		if (off >= len)
			break;
		*(__u64 *)(dst + off) = kt_kload(src + off);
	}
	if (len & 7) {
		__u64 last = (len - 1) & (max_len - 8);
		*(__u64 *)(dst + last) &= (1ULL << ((len & 7) * 8)) - 1;
	}
	/* The page may have been replaced while being read (migration, reclaim): the entry must
	 * be the one the copy started from. */
	return kt_kload(slot) == entry;
}

#else /* not x86, or the compat build (KT_NO_KFUNCS): bpf_probe_read_user only */

static __always_inline bool kt_user_read(struct mm_struct *mm, char *dst, __u64 addr, __u64 len, __u32 max_len)
{
	return false;
}

#endif

/* Copies len (<= max_len, a constant power of two >= 8) bytes of mm's user memory at addr into
 * dst, through the direct map when kt_user_read can, else with bpf_probe_read_user. Either way
 * the bytes after len in its last 8-byte word are zero. False when neither could read. */
static __always_inline bool kt_copy_user(struct mm_struct *mm, char *dst, __u64 addr, __u64 len, __u32 max_len)
{
	if (kt_user_read(mm, dst, addr, len, max_len))
		return true;
	if (len & 7)
		*(__u64 *)(dst + (len & (max_len - 8))) = 0;
	return bpf_probe_read_user(dst, len, (const void *)addr) == 0;
}

#endif /* KTRAIL_USER_PAGES_BPF_H */
