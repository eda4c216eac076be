//! bf16 matrix multiply for CPU training with `train.precision = "bf16"`.
//!
//! This module owns one operation: `C = A · B` where A and B are f32 matrices (any strides,
//! so transposed views cost nothing extra) that are rounded to bfloat16 (round to nearest
//! even) while being packed, and the products are summed in f32 by the AVX512-BF16
//! instruction VDPBF16PS. Halving the operand width doubles the multiply throughput of the
//! f32 path, which is the point of bf16 mixed precision; accumulating in f32 keeps the sums
//! accurate.
//!
//! Structure (GotoBLAS/BLIS): k is walked in equal blocks of at most `KC_PAIRS` pairs
//! (`KC_PAIRS_FEW_ROWS` when A has few rows). For each k block, all of A is packed into
//! row panels of `MR` rows (one u32 = two bf16 per row and k pair, which the micro-kernel
//! broadcasts) and B, up to `NC` columns at a time, into column panels of `NR` columns (one
//! 512-bit vector holds 16 columns' interleaved k pair). Then `MC`-row tasks run the
//! MR × NR micro-kernel over the packed panels. Packing reads the strided f32 input
//! directly, with vector paths for either stride being 1, so transposed views cost nothing
//! extra. Packing and compute are spread over rayon's global pool; every element of C is
//! summed in the same order whatever the thread count, so results are bit-identical across
//! thread counts and calls.
//!
//! The pack buffers (about (m + NC) × KC_PAIRS × 4 bytes) are kept per calling thread and
//! reused by later calls.
//!
//! Like the hardware instructions, the conversion treats subnormal f32 inputs as (signed)
//! zero; the scalar conversion used at matrix edges does the same, so an element converts
//! identically wherever it sits.

// The kernel's `unsafe fn`s are intrinsics from top to bottom (each behind its
// `#[target_feature]`); their safety contracts are stated once per function, not per line.
#![allow(unsafe_op_in_unsafe_fn)]

/// Whether this CPU can run `gemm_bf16` (x86-64 with avx512f, avx512bw and avx512bf16,
/// detected at run time).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A strided read-only f32 matrix: element (i, j) is `data[offset + i*row_stride + j*col_stride]`.
/// Strides are in elements and may be any non-negative values (a transposed view has
/// row_stride 1).
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatRef<'_> {
    /// Panics unless every element of the view lies inside `data`.
    fn check_bounds(&self, name: &str) {
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .and_then(|r| (self.cols - 1).checked_mul(self.col_stride).map(|c| (r, c)))
            .and_then(|(r, c)| r.checked_add(c))
            .and_then(|rc| rc.checked_add(self.offset));
        match last {
            Some(last) if last < self.data.len() => {}
            _ => panic!(
                "gemm_bf16: {name} view ({} x {}, offset {}, strides {}/{}) reaches past its data (len {})",
                self.rows,
                self.cols,
                self.offset,
                self.row_stride,
                self.col_stride,
                self.data.len()
            ),
        }
    }
}

/// Rounds an f32 to bfloat16 (round to nearest, ties to even) and returns its bits.
/// NaN stays NaN (made quiet), infinities stay infinite, and subnormals become signed zero,
/// matching VCVTNE2PS2BF16 so that edge elements convert exactly like vectorised ones.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x0040) as u16;
    }
    if x.is_subnormal() {
        return ((bits >> 16) & 0x8000) as u16;
    }
    let round_bias = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round_bias) >> 16) as u16
}

/// The f32 value of bfloat16 bits.
pub fn bf16_bits_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// c (m×n, row-major contiguous, c.len() == m*n) = a (m×k) · b (k×n), computed with a and b
/// rounded to bfloat16 (round to nearest even) and products summed in f32. Overwrites c.
/// Parallel over rayon's global pool (whatever RAYON_NUM_THREADS says; 1 thread works).
/// Panics with a clear message if !available(), or shapes/bounds disagree.
pub fn gemm_bf16(a: MatRef, b: MatRef, c: &mut [f32]) {
    assert!(
        available(),
        "gemm_bf16: this CPU lacks avx512f/avx512bw/avx512bf16 (check bf16_gemm::available() first)"
    );
    assert_eq!(
        a.cols, b.rows,
        "gemm_bf16: inner dimensions disagree: a is {} x {}, b is {} x {}",
        a.rows, a.cols, b.rows, b.cols
    );
    assert_eq!(
        Some(c.len()),
        a.rows.checked_mul(b.cols),
        "gemm_bf16: c has {} elements, expected m*n = {} x {}",
        c.len(),
        a.rows,
        b.cols
    );
    a.check_bounds("a");
    b.check_bounds("b");
    if c.is_empty() {
        // Nothing to write.
    } else if a.cols == 0 {
        c.fill(0.0);
    } else {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU features were checked above, and both views were checked to lie
        // inside their slices, which is all the packing code reads.
        unsafe {
            x86::gemm(a, b, c)
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MatRef, f32_to_bf16_bits};
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    /// Rows of C per micro-kernel tile (each row's k pair is one broadcast u32).
    pub const MR: usize = 12;
    /// Columns of C per micro-kernel tile: two 16-lane vectors, so 24 accumulators.
    pub const NR: usize = 32;
    /// Most k pairs per cache block when A has many rows. A packed B micro-panel
    /// (256 × NR u32 = 32 KiB) is then read from L1/L2 by each A panel, and one row block's
    /// packed A (MC × 256 u32 = 96 KiB) stays in L2.
    pub const KC_PAIRS: usize = 256;
    /// Most k pairs per cache block when A has few rows (the weight-gradient shapes, with
    /// long k): each block then carries little work, so longer blocks halve the number of
    /// parallel phases and of passes over C.
    pub const KC_PAIRS_FEW_ROWS: usize = 512;
    /// Up to this many rows of A count as "few rows".
    pub const FEW_ROWS: usize = 1024;
    /// Columns of B packed per block.
    pub const NC: usize = 1024;
    /// Rows of C per parallel task (a multiple of MR).
    pub const MC: usize = 96;

    thread_local! {
        static PACK_BUFFER: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
    }

    /// A raw pointer into a pack buffer, shared by tasks that write disjoint parts.
    #[derive(Clone, Copy)]
    struct PackPtr(*mut u32);
    unsafe impl Send for PackPtr {}
    unsafe impl Sync for PackPtr {}
    impl PackPtr {
        /// The pointer (a method, so closures capture the whole Sync wrapper).
        fn at(self, index: usize) -> *mut u32 {
            self.0.wrapping_add(index)
        }
    }

    /// k pairs per packing task when an operand is packed k-pair by k-pair.
    const PACK_KP_CHUNK: usize = 8;

    /// Runs `pack(panel, kp_range)` over all `panels` × pairs `0 .. kc` in parallel.
    /// When the lines are adjacent in memory (stride 1 across lines), each task takes a
    /// range of k pairs across all panels, so that it reads whole stretches of rows;
    /// otherwise each task takes whole panels, reading each line's k run in one go.
    fn parallel_pack(
        line_stride: usize,
        k_stride: usize,
        panels: usize,
        kc: usize,
        pack: impl Fn(usize, std::ops::Range<usize>) + Sync,
    ) {
        if line_stride == 1 && k_stride != 1 {
            (0..kc.div_ceil(PACK_KP_CHUNK))
                .into_par_iter()
                .for_each(|chunk| {
                    let kp_lo = chunk * PACK_KP_CHUNK;
                    let kp_range = kp_lo..(kp_lo + PACK_KP_CHUNK).min(kc);
                    for panel in 0..panels {
                        pack(panel, kp_range.clone());
                    }
                });
        } else {
            (0..panels)
                .into_par_iter()
                .with_min_len(2)
                .for_each(|panel| pack(panel, 0..kc));
        }
    }

    /// A raw pointer to C that tasks writing disjoint tiles may share.
    #[derive(Clone, Copy)]
    struct OutPtr(*mut f32);
    unsafe impl Send for OutPtr {}
    unsafe impl Sync for OutPtr {}

    /// Packed (bf16, bf16) pair as one u32: `first` in the low half, as VDPBF16PS expects.
    #[inline(always)]
    fn pair_bits(first: f32, second: f32) -> u32 {
        f32_to_bf16_bits(first) as u32 | (f32_to_bf16_bits(second) as u32) << 16
    }

    /// Lane indices that interleave the two 16-element halves of a 32 × u16 vector:
    /// output u16 lanes (2t, 2t+1) = input (t, 16 + t).
    #[inline(always)]
    unsafe fn interleave_index() -> __m512i {
        let mut idx = [0i16; 32];
        for t in 0..16 {
            idx[2 * t] = t as i16;
            idx[2 * t + 1] = 16 + t as i16;
        }
        _mm512_loadu_si512(idx.as_ptr() as *const _)
    }

    /// Bit mask of the low `n` lanes (n ≤ 16).
    #[inline(always)]
    fn lane_mask(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// Rounds `first` and `second` (16 lanes each) to bf16 and interleaves them into
    /// 16 pairs: u32 lane t = (first[t], second[t]).
    #[inline(always)]
    unsafe fn round_and_interleave(first: __m512, second: __m512, idx: __m512i) -> __m512i {
        // cvtne2ps puts its second operand in the low 16 bf16 lanes.
        let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(second, first));
        _mm512_permutexvar_epi16(idx, halves)
    }

    /// Rounds 32 consecutive f32 at `src` to bf16 in order, i.e. 16 consecutive k pairs.
    #[inline(always)]
    unsafe fn round_32_consecutive(src: *const f32) -> __m512i {
        let lo = _mm512_loadu_ps(src);
        let hi = _mm512_loadu_ps(src.add(16));
        std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo))
    }

    /// Transposes a 16 × 16 block of u32 held as 16 row vectors.
    #[inline(always)]
    unsafe fn transpose_16x16(rows: &[__m512i; 16]) -> [__m512i; 16] {
        // Stage 1 and 2 transpose each 128-bit lane's 4 × 4 block: afterwards, lane L of
        // `quads[4i + c]` holds column 4L + c of rows 4i .. 4i+4.
        let mut pairs = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            pairs[2 * i] = _mm512_unpacklo_epi32(rows[2 * i], rows[2 * i + 1]);
            pairs[2 * i + 1] = _mm512_unpackhi_epi32(rows[2 * i], rows[2 * i + 1]);
        }
        let mut quads = [_mm512_setzero_si512(); 16];
        for i in 0..4 {
            quads[4 * i] = _mm512_unpacklo_epi64(pairs[4 * i], pairs[4 * i + 2]);
            quads[4 * i + 1] = _mm512_unpackhi_epi64(pairs[4 * i], pairs[4 * i + 2]);
            quads[4 * i + 2] = _mm512_unpacklo_epi64(pairs[4 * i + 1], pairs[4 * i + 3]);
            quads[4 * i + 3] = _mm512_unpackhi_epi64(pairs[4 * i + 1], pairs[4 * i + 3]);
        }
        // Stage 3 and 4 transpose the 4 × 4 grid of 128-bit lanes.
        let mut out = [_mm512_setzero_si512(); 16];
        for c in 0..4 {
            let (w0, w1, w2, w3) = (quads[c], quads[4 + c], quads[8 + c], quads[12 + c]);
            let x0 = _mm512_shuffle_i32x4::<0x44>(w0, w1);
            let x1 = _mm512_shuffle_i32x4::<0xee>(w0, w1);
            let x2 = _mm512_shuffle_i32x4::<0x44>(w2, w3);
            let x3 = _mm512_shuffle_i32x4::<0xee>(w2, w3);
            out[c] = _mm512_shuffle_i32x4::<0x88>(x0, x2);
            out[4 + c] = _mm512_shuffle_i32x4::<0xdd>(x0, x2);
            out[8 + c] = _mm512_shuffle_i32x4::<0x88>(x1, x3);
            out[12 + c] = _mm512_shuffle_i32x4::<0xdd>(x1, x3);
        }
        out
    }

    /// Up to 16 lines of an operand (rows of A, or columns of B) whose k elements are
    /// contiguous in memory (line t starts at `src + t * line_stride`): packs their pairs
    /// `kp0 .. kp0+kc` so that pair kp of line t goes to `dst[kp * dst_stride + t]`.
    /// Lanes `lines .. store_lanes` are written as zero. `k` is the full inner dimension; a
    /// missing second element of the last pair is zero.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn pack_lines_contiguous_k(
        src: *const f32,
        line_stride: usize,
        lines: usize,
        store_lanes: usize,
        k: usize,
        kp0: usize,
        kc: usize,
        dst: *mut u32,
        dst_stride: usize,
    ) {
        let k0 = 2 * kp0;
        let store_mask = lane_mask(store_lanes);
        // Pairs with both elements present, done 16 at a time per line, then transposed
        // so that each k pair's lines become one vector.
        let full_pairs = ((k - k0) / 2).min(kc);
        let mut kp = 0;
        let mut block = [_mm512_setzero_si512(); 16];
        while kp + 16 <= full_pairs {
            for (t, row) in block.iter_mut().enumerate().take(lines) {
                *row = round_32_consecutive(src.add(t * line_stride + k0 + 2 * kp));
            }
            let columns = transpose_16x16(&block);
            for (p, column) in columns.iter().enumerate() {
                _mm512_mask_storeu_epi32(
                    dst.add((kp + p) * dst_stride) as *mut i32,
                    store_mask,
                    *column,
                );
            }
            kp += 16;
        }
        for kp in kp..kc {
            let k_first = k0 + 2 * kp;
            let out = dst.add(kp * dst_stride);
            for t in 0..store_lanes {
                let line = src.wrapping_add(t * line_stride);
                let first = if t < lines && k_first < k {
                    *line.add(k_first)
                } else {
                    0.0
                };
                let second = if t < lines && k_first + 1 < k {
                    *line.add(k_first + 1)
                } else {
                    0.0
                };
                *out.add(t) = pair_bits(first, second);
            }
        }
    }

    /// Up to 16 lines of an operand that are contiguous with each other (for fixed k the
    /// elements of consecutive lines are adjacent): packs pairs `kp0 .. kp0+kc` so that
    /// pair kp of line t goes to `dst[kp * dst_stride + t]`. Lanes `lines .. store_lanes`
    /// are written as zero.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn pack_lines_contiguous_across(
        src: *const f32,
        k_stride: usize,
        lines: usize,
        store_lanes: usize,
        k: usize,
        kp0: usize,
        kp_range: std::ops::Range<usize>,
        dst: *mut u32,
        dst_stride: usize,
    ) {
        let idx = interleave_index();
        let load_mask = lane_mask(lines);
        let store_mask = lane_mask(store_lanes);
        for kp in kp_range {
            let k_first = 2 * (kp0 + kp);
            let first = if k_first < k {
                _mm512_maskz_loadu_ps(load_mask, src.add(k_first * k_stride))
            } else {
                _mm512_setzero_ps()
            };
            let second = if k_first + 1 < k {
                _mm512_maskz_loadu_ps(load_mask, src.add((k_first + 1) * k_stride))
            } else {
                _mm512_setzero_ps()
            };
            let pairs = round_and_interleave(first, second, idx);
            _mm512_mask_storeu_epi32(dst.add(kp * dst_stride) as *mut i32, store_mask, pairs);
        }
    }

    /// Packs `lines` lines (line t at `line_stride * t` from `src`, element k at
    /// `k_stride * k`) for pairs `kp0 .. kp0+kc` into a panel of `width` lanes:
    /// `dst[kp * width + t]`, zero for t ≥ lines. Picks a vectorised path when one of the
    /// strides is 1.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn pack_panel(
        src: *const f32,
        line_stride: usize,
        k_stride: usize,
        lines: usize,
        width: usize,
        k: usize,
        kp0: usize,
        kc: usize,
        kp_range: std::ops::Range<usize>,
        dst: *mut u32,
    ) {
        debug_assert!(lines <= width && kp_range.end <= kc);
        let vector_path = k_stride == 1 || line_stride == 1;
        let mut t = 0;
        while t < width {
            let lines_here = lines.saturating_sub(t).min(16);
            let lanes_here = (width - t).min(16);
            let group_src = src.wrapping_add(t * line_stride);
            let group_dst = dst.add(t);
            if lines_here == 0 {
                for kp in kp_range.clone() {
                    for lane in 0..lanes_here {
                        *group_dst.add(kp * width + lane) = 0;
                    }
                }
            } else if vector_path && k_stride == 1 {
                debug_assert!(kp_range == (0..kc));
                pack_lines_contiguous_k(
                    group_src,
                    line_stride,
                    lines_here,
                    lanes_here,
                    k,
                    kp0,
                    kc,
                    group_dst,
                    width,
                );
            } else if vector_path {
                pack_lines_contiguous_across(
                    group_src,
                    k_stride,
                    lines_here,
                    lanes_here,
                    k,
                    kp0,
                    kp_range.clone(),
                    group_dst,
                    width,
                );
            } else {
                for lane in 0..lanes_here {
                    let line = group_src.wrapping_add(lane * line_stride);
                    for kp in kp_range.clone() {
                        let k_first = 2 * (kp0 + kp);
                        let present = lane < lines_here;
                        let first = if present && k_first < k {
                            *line.add(k_first * k_stride)
                        } else {
                            0.0
                        };
                        let second = if present && k_first + 1 < k {
                            *line.add((k_first + 1) * k_stride)
                        } else {
                            0.0
                        };
                        *group_dst.add(kp * width + lane) = pair_bits(first, second);
                    }
                }
            }
            t += 16;
        }
    }

    /// The register-blocked kernel: the MR × NR tile of C at `c` (row stride `ldc`) gets
    /// (or, with `accumulate`, adds) the product of one packed A panel and one packed B
    /// panel over `kc` pairs. Only the top-left `rows` × `cols` of the tile is written.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn micro_kernel(
        kc: usize,
        a_panel: *const u32,
        b_panel: *const u32,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let mut a_ptr = a_panel;
        let mut b_ptr = b_panel;
        for _ in 0..kc {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b_ptr as *const _));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b_ptr.add(16) as *const _));
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a_ptr.add(r) as i32));
                acc_row[0] = _mm512_dpbf16_ps(acc_row[0], a, b0);
                acc_row[1] = _mm512_dpbf16_ps(acc_row[1], a, b1);
            }
            a_ptr = a_ptr.add(MR);
            b_ptr = b_ptr.add(NR);
        }
        let mask0 = lane_mask(cols);
        let mask1 = lane_mask(cols.saturating_sub(16));
        for (r, acc_row) in acc.iter().enumerate().take(rows) {
            let row = c.add(r * ldc);
            let (mut v0, mut v1) = (acc_row[0], acc_row[1]);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(mask0, row));
                if mask1 != 0 {
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(mask1, row.add(16)));
                }
            }
            _mm512_mask_storeu_ps(row, mask0, v0);
            if mask1 != 0 {
                _mm512_mask_storeu_ps(row.add(16), mask1, v1);
            }
        }
    }

    /// Packs all of A's rows for pairs `kp0 .. kp0+kc` into MR-row panels.
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
    unsafe fn pack_a_panel(
        a: MatRef,
        panel: usize,
        kp0: usize,
        kc: usize,
        kp_range: std::ops::Range<usize>,
        dst: *mut u32,
    ) {
        let row0 = panel * MR;
        let rows = (a.rows - row0).min(MR);
        let src = a.data.as_ptr().add(a.offset + row0 * a.row_stride);
        pack_panel(
            src,
            a.row_stride,
            a.col_stride,
            rows,
            MR,
            a.cols,
            kp0,
            kc,
            kp_range,
            dst,
        );
    }

    /// Packs B's columns `col0 ..` (one NR panel) for pairs `kp0 .. kp0+kc`.
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
    unsafe fn pack_b_panel(
        b: MatRef,
        col0: usize,
        kp0: usize,
        kc: usize,
        kp_range: std::ops::Range<usize>,
        dst: *mut u32,
    ) {
        let cols = (b.cols - col0).min(NR);
        let src = b.data.as_ptr().add(b.offset + col0 * b.col_stride);
        pack_panel(
            src,
            b.col_stride,
            b.row_stride,
            cols,
            NR,
            b.rows,
            kp0,
            kc,
            kp_range,
            dst,
        );
    }

    /// One parallel task: rows `row0 .. row0+rows` (a multiple of MR from a panel start)
    /// × B panels `panel_lo .. panel_hi` of the current block.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
    unsafe fn compute_task(
        packed_a: &[u32],
        packed_b: &[u32],
        kc: usize,
        m: usize,
        n: usize,
        row0: usize,
        rows: usize,
        col0: usize,
        cols: usize,
        panel_lo: usize,
        panel_hi: usize,
        c: OutPtr,
        accumulate: bool,
    ) {
        let a_panels = rows.div_ceil(MR);
        for bp in panel_lo..panel_hi {
            let tile_col = col0 + bp * NR;
            let tile_cols = (col0 + cols - tile_col).min(NR);
            let b_panel = packed_b.as_ptr().add(bp * NR * kc);
            for ap in 0..a_panels {
                let tile_row = row0 + ap * MR;
                let tile_rows = (m - tile_row).min(MR);
                let a_panel = packed_a.as_ptr().add((tile_row / MR) * MR * kc);
                micro_kernel(
                    kc,
                    a_panel,
                    b_panel,
                    c.0.add(tile_row * n + tile_col),
                    n,
                    tile_rows,
                    tile_cols,
                    accumulate,
                );
            }
        }
    }

    /// # Safety
    /// The CPU must support avx512f/bw/bf16, the views must lie inside their slices,
    /// a.cols == b.rows > 0, and c.len() == a.rows * b.cols > 0.
    pub unsafe fn gemm(a: MatRef, b: MatRef, c: &mut [f32]) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let k_pairs = k.div_ceil(2);
        // Equal k blocks, each at most the limit for this shape.
        let kc_limit = if m <= FEW_ROWS {
            KC_PAIRS_FEW_ROWS
        } else {
            KC_PAIRS
        };
        let kc_max = k_pairs.div_ceil(k_pairs.div_ceil(kc_limit));
        let a_panels = m.div_ceil(MR);
        let threads = rayon::current_num_threads().max(1);
        let nc_max = NC.min(n.div_ceil(NR) * NR);
        let a_len = a_panels * MR * kc_max;
        let b_len = nc_max * kc_max;
        // The pack buffers are kept per calling thread and reused, so repeated calls (a
        // training loop) neither page-fault on fresh memory nor zero it. Taking them out
        // of the cell keeps a nested call on the same thread correct (it allocates).
        let mut buffer = PACK_BUFFER.take();
        if buffer.len() < a_len + b_len {
            buffer = vec![0u32; a_len + b_len];
        }
        let (packed_a, packed_b) = buffer.split_at_mut(a_len);
        let out = OutPtr(c.as_mut_ptr());

        let mut kp0 = 0;
        while kp0 < k_pairs {
            let kc = kc_max.min(k_pairs - kp0);
            let accumulate = kp0 > 0;
            let a_panel_len = MR * kc;
            let a_out = PackPtr(packed_a.as_mut_ptr());
            let pack_a = || {
                parallel_pack(
                    a.row_stride,
                    a.col_stride,
                    a_panels,
                    kc,
                    |panel, kp_range| {
                        let dst = a_out.at(panel * a_panel_len);
                        pack_a_panel(a, panel, kp0, kc, kp_range, dst)
                    },
                )
            };
            let b_panel_len = NR * kc;
            let b_out = PackPtr(packed_b.as_mut_ptr());
            let pack_b = |col0: usize, b_panels: usize| {
                parallel_pack(
                    b.col_stride,
                    b.row_stride,
                    b_panels,
                    kc,
                    |panel, kp_range| {
                        let dst = b_out.at(panel * b_panel_len);
                        pack_b_panel(b, col0 + panel * NR, kp0, kc, kp_range, dst)
                    },
                )
            };

            let mut col0 = 0;
            while col0 < n {
                let cols = NC.min(n - col0);
                let b_panels = cols.div_ceil(NR);
                // One parallel phase packs this k block's A together with the first B block.
                if col0 == 0 {
                    rayon::join(pack_a, || pack_b(col0, b_panels));
                } else {
                    pack_b(col0, b_panels);
                }

                // Tasks: row blocks of MC rows, and if that gives too few tasks to keep every
                // thread busy, the block's B panels are split too.
                let row_blocks = m.div_ceil(MC);
                let wanted_tasks = 16 * threads;
                let col_splits = wanted_tasks.div_ceil(row_blocks).clamp(1, b_panels);
                let panels_per_split = b_panels.div_ceil(col_splits);
                let col_splits = b_panels.div_ceil(panels_per_split);
                let (packed_a, packed_b) = (&*packed_a, &*packed_b);
                (0..row_blocks * col_splits)
                    .into_par_iter()
                    .for_each(|task| {
                        let (row_block, split) = (task / col_splits, task % col_splits);
                        let row0 = row_block * MC;
                        let panel_lo = split * panels_per_split;
                        let panel_hi = (panel_lo + panels_per_split).min(b_panels);
                        compute_task(
                            packed_a,
                            packed_b,
                            kc,
                            m,
                            n,
                            row0,
                            MC.min(m - row0),
                            col0,
                            cols,
                            panel_lo,
                            panel_hi,
                            out,
                            accumulate,
                        );
                    });
                col0 += cols;
            }
            kp0 += kc;
        }
        PACK_BUFFER.set(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip() -> bool {
        if !available() {
            eprintln!("bf16_gemm tests skipped: CPU lacks avx512bf16");
            return true;
        }
        false
    }

    /// Small deterministic pseudo-random values in about [-2, 2].
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    fn at(m: &MatRef, i: usize, j: usize) -> f32 {
        m.data[m.offset + i * m.row_stride + j * m.col_stride]
    }

    fn round(x: f32) -> f64 {
        bf16_bits_to_f32(f32_to_bf16_bits(x)) as f64
    }

    /// Checks c against an f64 sum of bf16-rounded products, relative to each element's
    /// Σ|a||b| scale.
    fn check(a: MatRef, b: MatRef, c: &[f32]) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        for i in 0..m {
            for j in 0..n {
                let (mut sum, mut scale) = (0.0f64, 0.0f64);
                for p in 0..k {
                    let prod = round(at(&a, i, p)) * round(at(&b, p, j));
                    sum += prod;
                    scale += prod.abs();
                }
                let err = (c[i * n + j] as f64 - sum).abs();
                assert!(
                    err <= 1e-5 * scale.max(1e-30),
                    "m={m} k={k} n={n}: c[{i},{j}] = {} but reference {sum} (scale {scale})",
                    c[i * n + j]
                );
            }
        }
    }

    /// A view of a (rows × cols) matrix stored with the given layout inside a fresh buffer.
    fn view(
        data: &[f32],
        offset: usize,
        rows: usize,
        cols: usize,
        transposed: bool,
        pad: usize,
    ) -> MatRef<'_> {
        let (row_stride, col_stride) = if transposed {
            (1, rows + pad)
        } else {
            (cols + pad, 1)
        };
        MatRef {
            data,
            offset,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    fn buffer(rows: usize, cols: usize, offset: usize, pad: usize, seed: u64) -> Vec<f32> {
        values(offset + (rows + pad) * (cols + pad) + 1, seed)
    }

    #[test]
    fn rounding_ties_nan_inf() {
        // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
        assert_eq!(f32_to_bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        // 1.0078125 + 2^-8 is halfway between odd 0x3f81 and even 0x3f82: rounds up.
        assert_eq!(f32_to_bf16_bits(1.0078125 + 1.0 / 256.0), 0x3f82);
        // Just above the tie rounds up.
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_7fff)), 0x3f80);
        assert_eq!(f32_to_bf16_bits(-1.0 - 1.0 / 256.0), 0xbf80);
        assert!(bf16_bits_to_f32(f32_to_bf16_bits(f32::NAN)).is_nan());
        assert!(bf16_bits_to_f32(f32_to_bf16_bits(f32::from_bits(0x7f80_0001))).is_nan());
        assert!(bf16_bits_to_f32(f32_to_bf16_bits(-f32::NAN)).is_nan());
        assert_eq!(
            bf16_bits_to_f32(f32_to_bf16_bits(f32::INFINITY)),
            f32::INFINITY
        );
        assert_eq!(
            bf16_bits_to_f32(f32_to_bf16_bits(f32::NEG_INFINITY)),
            f32::NEG_INFINITY
        );
        // The largest finite f32 rounds to infinity, as round-to-nearest-even requires.
        assert_eq!(bf16_bits_to_f32(f32_to_bf16_bits(f32::MAX)), f32::INFINITY);
        assert_eq!(f32_to_bf16_bits(0.0), 0);
        assert_eq!(f32_to_bf16_bits(-0.0), 0x8000);
    }

    #[test]
    fn vector_rounding_matches_scalar() {
        if skip() {
            return;
        }
        // Every rounding-relevant pattern, placed both at vectorised and at scalar (edge)
        // positions: a 1 × k row times a k × 1 column of ones picks out each a element.
        let mut specials: Vec<f32> = vec![
            1.0 + 1.0 / 256.0,
            1.0078125 + 1.0 / 256.0,
            f32::from_bits(0x3f80_8001),
            f32::from_bits(0x3f80_7fff),
            -3.3,
            1e-39, // subnormal: flushed, like the hardware
            65504.0,
        ];
        // The tail of a 71-long row is packed by the scalar edge code.
        let edge = specials.clone();
        specials.extend(values(57, 9));
        specials.extend(edge);
        let k = specials.len();
        for index in 0..k {
            let mut a_data = vec![0.0f32; 2 * k];
            a_data[index] = specials[index];
            let ones = vec![1.0f32; k];
            let a = MatRef {
                data: &a_data,
                offset: 0,
                rows: 1,
                cols: k,
                row_stride: k,
                col_stride: 1,
            };
            let b = MatRef {
                data: &ones,
                offset: 0,
                rows: k,
                cols: 1,
                row_stride: 1,
                col_stride: 1,
            };
            let mut c = [f32::NAN];
            gemm_bf16(a, b, &mut c);
            assert_eq!(
                c[0],
                bf16_bits_to_f32(f32_to_bf16_bits(specials[index])),
                "a[{index}]"
            );
        }
    }

    #[test]
    fn tiny_and_odd_shapes_all_layouts() {
        if skip() {
            return;
        }
        let sizes = [1, 2, 3, 15, 17, 31, 33, 100];
        let mut seed = 1;
        for &m in &sizes {
            for &k in &sizes {
                for &n in &sizes {
                    for layout in 0..4 {
                        let (a_t, b_t) = (layout & 1 == 1, layout & 2 == 2);
                        let (offset, pad) = (layout * 3 + 1, layout % 3);
                        seed += 1;
                        let a_buf = buffer(m, k, offset, pad, seed);
                        let b_buf = buffer(k, n, offset + 1, pad + 1, seed + 1000);
                        let a = view(&a_buf, offset, m, k, a_t, pad);
                        let b = view(&b_buf, offset + 1, k, n, b_t, pad + 1);
                        let mut c = vec![f32::NAN; m * n];
                        gemm_bf16(a, b, &mut c);
                        check(a, b, &c);
                    }
                }
            }
        }
    }

    #[test]
    fn general_strides() {
        if skip() {
            return;
        }
        // Neither stride is 1: the scalar packing path.
        let (m, k, n) = (37, 29, 45);
        let a_buf = values(5 + m * k * 6, 3);
        let b_buf = values(2 + k * n * 6, 4);
        let a = MatRef {
            data: &a_buf,
            offset: 5,
            rows: m,
            cols: k,
            row_stride: 2,
            col_stride: 2 * m + 1,
        };
        let b = MatRef {
            data: &b_buf,
            offset: 2,
            rows: k,
            cols: n,
            row_stride: 3 * n,
            col_stride: 3,
        };
        let mut c = vec![0.0; m * n];
        gemm_bf16(a, b, &mut c);
        check(a, b, &c);
    }

    #[test]
    fn zero_strides_broadcast() {
        if skip() {
            return;
        }
        // Stride 0 repeats a row or column (a broadcast view); every stride-0 combination.
        let (m, k, n) = (19, 41, 35);
        let a_buf = values(3 + m * k, 5);
        let b_buf = values(1 + k * n, 6);
        for (a_rs, a_cs, b_rs, b_cs) in [(0, 1, 0, 1), (1, 0, 1, 0), (0, 0, n, 1), (k, 1, 0, 0)] {
            let a = MatRef {
                data: &a_buf,
                offset: 3,
                rows: m,
                cols: k,
                row_stride: a_rs,
                col_stride: a_cs,
            };
            let b = MatRef {
                data: &b_buf,
                offset: 1,
                rows: k,
                cols: n,
                row_stride: b_rs,
                col_stride: b_cs,
            };
            let mut c = vec![0.0; m * n];
            gemm_bf16(a, b, &mut c);
            check(a, b, &c);
        }
    }

    #[test]
    fn large_shapes() {
        if skip() {
            return;
        }
        // Several k blocks (accumulating into c), several B column blocks, and edge tiles.
        for &(m, k, n, a_t, b_t) in &[
            (203, 601, 1100, false, false),
            (130, 1027, 97, true, true),
            (64, 4096, 96, true, false),
            (1030, 700, 50, false, true),
        ] {
            let a_buf = buffer(m, k, 7, 0, 11);
            let b_buf = buffer(k, n, 0, 0, 12);
            let a = view(&a_buf, 7, m, k, a_t, 0);
            let b = view(&b_buf, 0, k, n, b_t, 0);
            let mut c = vec![f32::NAN; m * n];
            gemm_bf16(a, b, &mut c);
            check(a, b, &c);
        }
    }

    #[test]
    fn threads_do_not_change_results() {
        if skip() {
            return;
        }
        let (m, k, n) = (1100, 777, 515);
        let a_buf = buffer(m, k, 0, 0, 21);
        let b_buf = buffer(k, n, 0, 0, 22);
        let a = view(&a_buf, 0, m, k, false, 0);
        let b = view(&b_buf, 0, k, n, true, 0);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut c = vec![0.0f32; m * n];
            pool.install(|| gemm_bf16(a, b, &mut c));
            c
        };
        let one = run(1);
        let two = run(2);
        let three = run(3);
        assert!(
            one.iter()
                .zip(&two)
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
        assert!(
            one.iter()
                .zip(&three)
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
        assert!(
            one.iter()
                .zip(&run(2))
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
        check(a, b, &one);
    }

    #[test]
    fn empty_and_zero_k() {
        if skip() {
            return;
        }
        let data = [1.0f32; 4];
        let a = MatRef {
            data: &data,
            offset: 0,
            rows: 2,
            cols: 0,
            row_stride: 0,
            col_stride: 1,
        };
        let b = MatRef {
            data: &data,
            offset: 0,
            rows: 0,
            cols: 2,
            row_stride: 2,
            col_stride: 1,
        };
        let mut c = [5.0f32; 4];
        gemm_bf16(a, b, &mut c);
        assert_eq!(c, [0.0; 4]);
    }

    #[test]
    #[should_panic(expected = "reaches past its data")]
    fn out_of_bounds_view_panics() {
        if !available() {
            panic!("reaches past its data (skipped: no avx512bf16)");
        }
        let data = [1.0f32; 10];
        let a = MatRef {
            data: &data,
            offset: 2,
            rows: 3,
            cols: 3,
            row_stride: 3,
            col_stride: 1,
        };
        let b = MatRef {
            data: &data,
            offset: 0,
            rows: 3,
            cols: 3,
            row_stride: 3,
            col_stride: 1,
        };
        let mut c = [0.0f32; 9];
        gemm_bf16(a, b, &mut c);
    }

    #[test]
    #[should_panic(expected = "inner dimensions disagree")]
    fn shape_mismatch_panics() {
        let data = [1.0f32; 16];
        let a = MatRef {
            data: &data,
            offset: 0,
            rows: 2,
            cols: 3,
            row_stride: 3,
            col_stride: 1,
        };
        let b = MatRef {
            data: &data,
            offset: 0,
            rows: 2,
            cols: 2,
            row_stride: 2,
            col_stride: 1,
        };
        let mut c = [0.0f32; 4];
        if !available() {
            panic!("inner dimensions disagree (skipped: no avx512bf16)");
        }
        gemm_bf16(a, b, &mut c);
    }
}
