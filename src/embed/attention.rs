//! Rotary positions and general attention for the architectures beyond BERT: bidirectional,
//! sliding-window or causal masks and grouped-query heads, one packed sequence at a time.
//! (BERT's full bidirectional attention has its own AVX-512 kernel in `kernels.rs`.)

use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::kernels::{gemm_f32_strided, softmax_rows};

/// Which keys a query token may attend to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Every token of the sequence.
    Full,
    /// Keys within `half` positions on either side (`|i - j| <= half`).
    Window { half: usize },
    /// Keys at or before the query (decoders).
    Causal,
}

impl Mask {
    fn range(self, i: usize, len: usize) -> (usize, usize) {
        match self {
            Mask::Full => (0, len),
            Mask::Window { half } => (i.saturating_sub(half), (i + half + 1).min(len)),
            Mask::Causal => (0, i + 1),
        }
    }
}

/// Applies rotary position embeddings in place, in the "rotate half" convention of Hugging
/// Face's Llama, Qwen and ModernBERT (dimension `d` pairs with `d + head_dim / 2`).
/// `x` holds `len` rows (positions `0..len`) of `heads × head_dim` values, with `stride`
/// values from one row to the next.
pub fn rotary(x: &mut [f32], len: usize, stride: usize, heads: usize, head_dim: usize, theta: f32) {
    let half = head_dim / 2;
    let table = rotary_table(head_dim, theta, len);
    for pos in 0..len {
        let (cos, sin) = (&table.cos[pos * half..(pos + 1) * half], &table.sin[pos * half..(pos + 1) * half]);
        let row = &mut x[pos * stride..pos * stride + heads * head_dim];
        for h in row.chunks_exact_mut(head_dim) {
            let (lo, hi) = h.split_at_mut(half);
            for d in 0..half {
                let (a, b) = (lo[d], hi[d]);
                lo[d] = a * cos[d] - b * sin[d];
                hi[d] = b * cos[d] + a * sin[d];
            }
        }
    }
}

/// cos and sin of every (position, frequency), `[positions × head_dim / 2]`, computed in f64.
struct RotaryTable {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// The table for (head_dim, theta) covering at least `len` positions, computed once and kept
/// (a model has one or two bases; each layer and sequence reuses them).
fn rotary_table(head_dim: usize, theta: f32, len: usize) -> Arc<RotaryTable> {
    type Tables = HashMap<(usize, u32), Arc<RotaryTable>>;
    static TABLES: Mutex<Option<Tables>> = Mutex::new(None);
    let mut tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    let tables = tables.get_or_insert_with(HashMap::new);
    let half = head_dim / 2;
    if let Some(t) = tables.get(&(head_dim, theta.to_bits())) {
        if t.cos.len() >= len * half {
            return t.clone();
        }
    }
    // Grown to a power of two so that longer inputs rarely rebuild it.
    let n = len.next_power_of_two().max(64);
    let inv: Vec<f64> = (0..half).map(|d| 1.0 / (theta as f64).powf(2.0 * d as f64 / head_dim as f64)).collect();
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for pos in 0..n {
        for f in &inv {
            let a = pos as f64 * f;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    let t = Arc::new(RotaryTable { cos, sin });
    tables.insert((head_dim, theta.to_bits()), t.clone());
    t
}

/// Scaled dot-product attention for one sequence of `len` tokens. `q` has `len` rows of
/// `heads × head_dim` (row stride `q_stride`), `k` and `v` have `len` rows of
/// `kv_heads × head_dim` (strides `k_stride`, `v_stride`); query head `h` reads key/value head
/// `h / (heads / kv_heads)`. Writes `len × heads × head_dim` values to `out`.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    q: &[f32],
    q_stride: usize,
    k: &[f32],
    k_stride: usize,
    v: &[f32],
    v_stride: usize,
    len: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    mask: Mask,
    out: &mut [f32],
) {
    attend_keys(q, q_stride, k, k_stride, v, v_stride, len, heads, kv_heads, head_dim, mask, len, out)
}

/// `attend` with the keys further limited to the sequence's first `keys` tokens (every token
/// is still computed as a query): ColBERT queries whose expansion tokens are hidden from
/// attention. A query token that sees no key at all (a sliding window lying wholly past
/// `keys`) gets a zero context, as PyTorch's `scaled_dot_product_attention` gives a fully
/// masked row (PyLate's default attention in transformers).
#[allow(clippy::too_many_arguments)]
pub fn attend_keys(
    q: &[f32],
    q_stride: usize,
    k: &[f32],
    k_stride: usize,
    v: &[f32],
    v_stride: usize,
    len: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    mask: Mask,
    keys: usize,
    out: &mut [f32],
) {
    assert!(kv_heads > 0 && heads.is_multiple_of(kv_heads), "query heads must be a multiple of key/value heads");
    let group = heads / kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let width = heads * head_dim;
    let keys = keys.min(len);
    let out = &mut out[..len * width];
    if keys == 0 || head_dim == 0 {
        out.fill(0.0);
        return;
    }
    // The keys each query row sees; an empty range gets a zero context.
    let ranges: Vec<(usize, usize)> = (0..len)
        .map(|i| {
            let (lo, hi) = mask.range(i, len);
            (lo, hi.min(keys))
        })
        .collect();
    // Per head: scores = Q Kᵀ as one GEMM, each row's softmax over its visible keys (the rest
    // zeroed), then context = P V as another. Causal and window masks waste the masked part
    // of both products, which costs less than scalar loops over the visible keys.
    let per_head: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .map(|h| {
            let kvh = h / group;
            let mut scores = vec![0f32; len * keys];
            gemm_f32_strided(len, keys, head_dim, &mut scores, keys, &q[h * head_dim..], q_stride, 1, &k[kvh * head_dim..], 1, k_stride);
            for (row, &(lo, hi)) in scores.chunks_exact_mut(keys).zip(&ranges) {
                if lo >= hi {
                    row.fill(0.0);
                    continue;
                }
                softmax_rows(&mut row[lo..hi], hi - lo, scale);
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
            }
            let mut ctx = vec![0f32; len * head_dim];
            gemm_f32_strided(len, head_dim, keys, &mut ctx, head_dim, &scores, keys, 1, &v[kvh * head_dim..], v_stride, 1);
            ctx
        })
        .collect();
    for (i, row) in out.chunks_exact_mut(width).enumerate() {
        for (h, ctx) in per_head.iter().enumerate() {
            row[h * head_dim..(h + 1) * head_dim].copy_from_slice(&ctx[i * head_dim..(i + 1) * head_dim]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_at_position_zero_is_identity_and_keeps_norms() {
        let mut x: Vec<f32> = (0..2 * 8).map(|i| i as f32 * 0.1 - 0.4).collect();
        let orig = x.clone();
        rotary(&mut x, 2, 8, 2, 4, 10000.0);
        assert_eq!(&x[..8], &orig[..8]);
        for (a, b) in x[8..].chunks(4).zip(orig[8..].chunks(4)) {
            let n = |v: &[f32]| v.iter().map(|t| t * t).sum::<f32>();
            assert!((n(a) - n(b)).abs() < 1e-5);
        }
        // Position 1, frequency 1 for d = 0: (a, b) rotated by one radian.
        let (a, b) = (orig[8], orig[10]);
        assert!((x[8] - (a * 1f32.cos() - b * 1f32.sin())).abs() < 1e-6);
    }

    #[test]
    fn masks_limit_what_each_token_sees() {
        // One head, head_dim 1: value j is j, all scores equal, so each output is the mean of
        // the visible positions.
        let len = 5;
        let q = vec![0f32; len];
        let k = vec![0f32; len];
        let v: Vec<f32> = (0..len).map(|j| j as f32).collect();
        let mut out = vec![0f32; len];
        attend(&q, 1, &k, 1, &v, 1, len, 1, 1, 1, Mask::Causal, &mut out);
        assert_eq!(out, vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        attend(&q, 1, &k, 1, &v, 1, len, 1, 1, 1, Mask::Window { half: 1 }, &mut out);
        assert_eq!(out, vec![0.5, 1.0, 2.0, 3.0, 3.5]);
        attend(&q, 1, &k, 1, &v, 1, len, 1, 1, 1, Mask::Full, &mut out);
        assert!(out.iter().all(|&o| (o - 2.0).abs() < 1e-6));
        // Keys limited to the first 2 tokens: the window of token 4 (keys 3..5) sees none.
        attend_keys(&q, 1, &k, 1, &v, 1, len, 1, 1, 1, Mask::Window { half: 1 }, 2, &mut out);
        assert_eq!(out, vec![0.5, 0.5, 1.0, 0.0, 0.0]);
        attend_keys(&q, 1, &k, 1, &v, 1, len, 1, 1, 1, Mask::Full, 3, &mut out);
        assert!(out.iter().all(|&o| (o - 1.0).abs() < 1e-6));
    }
}
