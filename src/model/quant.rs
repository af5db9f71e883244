//! Weight quantization: symmetric int8 with one scale per output channel (row), and f16.

use half::f16;
use std::sync::Arc;

use super::weights::{Bytes, DType, WeightTensor};

/// Quantizes a `[rows, cols]` f32 matrix to int8, one scale per row (max |w| / 127).
pub fn quantize_rows_i8(values: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(rows * cols);
    let mut scales = Vec::with_capacity(rows);
    for r in 0..rows {
        let row = &values[r * cols..(r + 1) * cols];
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
        let inv = 1.0 / scale;
        q.extend(row.iter().map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8));
        scales.push(scale);
    }
    (q, scales)
}

/// Converts a tensor to the given storage type, a row at a time: memory holds the result and
/// one f32 row, never the whole tensor in f32 beside it.
pub fn convert(t: &WeightTensor, to: DType) -> WeightTensor {
    if t.dtype == to {
        return t.clone();
    }
    let cols = t.row_len();
    let rows = t.numel().checked_div(cols).unwrap_or(0);
    let mut row = vec![0f32; cols];
    let mut bytes: Vec<u8> = Vec::with_capacity(t.numel() * to.size());
    let mut scales = Vec::new();
    for r in 0..rows {
        t.row_into(r, &mut row);
        match to {
            DType::F32 => bytes.extend(row.iter().flat_map(|v| v.to_le_bytes())),
            DType::F16 => bytes.extend(row.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes())),
            DType::BF16 => bytes.extend(row.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())),
            DType::I8 => {
                let (q, s) = quantize_rows_i8(&row, 1, cols);
                bytes.extend(q.iter().map(|&v| v as u8));
                scales.push(s[0]);
            }
        }
    }
    WeightTensor {
        dtype: to,
        shape: t.shape.clone(),
        data: Bytes::from_vec(bytes),
        scales: (to == DType::I8).then(|| Arc::new(scales)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_roundtrip_error_is_bounded_by_half_a_step() {
        let vals: Vec<f32> = (0..64).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.013).collect();
        let (q, s) = quantize_rows_i8(&vals, 2, 32);
        for r in 0..2 {
            for c in 0..32 {
                let back = q[r * 32 + c] as f32 * s[r];
                assert!((back - vals[r * 32 + c]).abs() <= s[r] * 0.5 + 1e-7);
            }
        }
        // The largest magnitude maps to +-127 exactly.
        assert!(q.iter().any(|&v| v.abs() == 127));
    }

    #[test]
    fn zero_rows_get_a_finite_scale() {
        let (q, s) = quantize_rows_i8(&[0.0; 8], 1, 8);
        assert!(q.iter().all(|&v| v == 0));
        assert_eq!(s[0], 1.0);
    }
}
