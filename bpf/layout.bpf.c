// SPDX-License-Identifier: GPL-2.0
/*
 * layout.bpf.c - never loaded. References every ABI struct of events.h so all of them
 * appear in BTF; test/unit/decode-layout.test.ts compares that BTF with
 * collector/src/kernel/layout.ts (Tetragon's alignchecker idea).
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

KT_BTF_ANCHOR(kt_header);
KT_BTF_ANCHOR(kt_proc_exec);
KT_BTF_ANCHOR(kt_proc_fork);
KT_BTF_ANCHOR(kt_proc_exit);
KT_BTF_ANCHOR(kt_cgroup_event);
KT_BTF_ANCHOR(kt_oom_kill);
KT_BTF_ANCHOR(kt_memory_release);
KT_BTF_ANCHOR(kt_tcp_conn);
KT_BTF_ANCHOR(kt_tcp_close);
KT_BTF_ANCHOR(kt_tcp_reset);
KT_BTF_ANCHOR(kt_cpu_value);
KT_BTF_ANCHOR(kt_net_value);
KT_BTF_ANCHOR(kt_block_value);
const volatile enum kt_event_type kt_abi_types = 0;
const volatile enum kt_event_flags kt_abi_flags = 0;
const volatile enum kt_prog_slot kt_abi_slots = 0;
