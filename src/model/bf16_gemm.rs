//! PLACEHOLDER (scalar) — replaced by the AVX512-BF16 kernel.
use rayon::prelude::*;

pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

fn bf16(x: f32) -> f32 {
    let b = x.to_bits();
    let r = b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(r)
}

pub fn gemm_bf16(a: MatRef, b: MatRef, c: &mut [f32]) {
    assert!(available());
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k);
    assert_eq!(c.len(), m * n);
    c.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, row)| {
        for (j, out) in row.iter_mut().enumerate() {
            let mut s = 0f32;
            for p in 0..k {
                s += bf16(a.data[a.offset + i * a.row_stride + p * a.col_stride])
                    * bf16(b.data[b.offset + p * b.row_stride + j * b.col_stride]);
            }
            *out = s;
        }
    });
}
