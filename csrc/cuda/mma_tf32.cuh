// mma_tf32.cuh — the fragment layout of mma.sync m16n8k8 tf32 and the k permutation the
// tensor-core matmul kernels (ops_matmul.cu) build their fragments with. Host + device
// constexpr, so dvl_cuda_selftest can emulate a warp's mma on the CPU against an independently
// typed copy of the PTX table (selftest_ops.inc check_mma_layout; `dvl_cuda_selftest --host`
// runs it without a GPU).
#pragma once

#include "../core/dtype.h"  // DVL_HOST_DEVICE

namespace dvl_cuda {

// Fragment layout of mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, lane = g·4 + t
// (g = lane >> 2 "groupID", t = lane & 3 "threadID_in_group"). Checked against the PTX ISA 9.0
// §9.7.14.5.7 "Matrix Fragments for mma.m16n8k8" (.tf32 A/B tables, f32 C/D table) and CUTLASS
// cute MMA_Traits<SM80_16x8x8_F32TF32TF32F32_TN> (ALayout ((4,8),(2,2)):((16,1),(8,64)),
// BLayout ((4,8),2):((8,1),32), CLayout SM80_16x8_Row), which decode to the same table:
//
//   A 16×8 (M × K, .row), 4 regs:  a0 = A[g][t]    a1 = A[g+8][t]    a2 = A[g][t+4]   a3 = A[g+8][t+4]
//   B 8×8  (K × N, .col), 2 regs:  b0 = B[t][g]    b1 = B[t+4][g]
//   C/D 16×8 (M × N), 4 f32:       c0 = C[g][2t]   c1 = C[g][2t+1]   c2 = C[g+8][2t]  c3 = C[g+8][2t+1]
//
// A holds tokens (rows of x), B weights (B[k][n] = W[n][k]), C/D y[m][n]. Every fragment index
// below comes from these six functions (plus the k permutation perm_col, built on them).
// Checked on the host by selftest_ops.inc check_mma_layout: a warp emulated with a separately
// typed PTX table and these gathers gives x·Wᵀ exactly.
struct Mma1688 {
  DVL_HOST_DEVICE static constexpr int a_row(int lane, int i) { return (lane >> 2) + 8 * (i & 1); }
  DVL_HOST_DEVICE static constexpr int a_col(int lane, int i) { return (lane & 3) + 4 * (i >> 1); }
  DVL_HOST_DEVICE static constexpr int b_row(int lane, int i) { return (lane & 3) + 4 * i; }  // k
  DVL_HOST_DEVICE static constexpr int b_col(int lane, int /*i*/) { return lane >> 2; }        // n
  DVL_HOST_DEVICE static constexpr int c_row(int lane, int i) { return (lane >> 2) + 8 * (i >> 1); }
  DVL_HOST_DEVICE static constexpr int c_col(int lane, int i) { return 2 * (lane & 3) + (i & 1); }
};

// The k permutation. A dot product does not care in which order k is visited as long as A and
// B agree, so within one 32-column step lane (g, t) loads columns 8t .. 8t+7 of its rows (one
// 16-byte load of W, two of x) and the step's 4 mma j = 0..3 give logical k slot κ (0..7) the
// physical column perm_col(κ, j) = 8·(κ mod 4) + 4·⌊κ/4⌋ + j: over j the 8 slots × 4 mma visit
// each of the 32 columns exactly once, and the column a lane needs in a fragment is always one
// of its own 8 (a_col / b_row are t + 4·(0|1), so perm_col(·) − 8t ∈ 0..7). frag_a_elem /
// frag_b_elem give that position in the lane's 8-vector; frag_a_half which of the two token
// rows (g, g + 8) a register reads.
DVL_HOST_DEVICE constexpr int perm_col(int kappa, int j) { return 8 * (kappa & 3) + 4 * (kappa >> 2) + j; }
DVL_HOST_DEVICE constexpr int frag_a_half(int i) { return Mma1688::a_row(0, i) >> 3; }
DVL_HOST_DEVICE constexpr int frag_a_elem(int i, int j) { return perm_col(Mma1688::a_col(0, i), j); }
DVL_HOST_DEVICE constexpr int frag_b_elem(int i, int j) { return perm_col(Mma1688::b_row(0, i), j); }
static_assert(frag_a_elem(0, 0) == 0 && frag_a_elem(2, 3) == 7 && frag_b_elem(1, 2) == 6, "k permutation");
static_assert(perm_col(3, 0) - 8 * 3 == 0 && perm_col(7, 3) - 8 * 3 == 7, "a lane's columns stay its own");

}  // namespace dvl_cuda
