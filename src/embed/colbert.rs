//! Late interaction (ColBERT, in PyLate's layout): owns how queries and documents become
//! token inputs (the `[Q] `/`[D] ` marker token after the first token, truncation at
//! `query_length`/`document_length`, query expansion with mask tokens), how the encoder's
//! hidden states become token vectors (the Dense projection, L2 per token, the document
//! skiplist), MaxSim, and the int8 form (one scale per token) the index stores. The encoder
//! itself is the embedder's runtime; this module never sees a file.

use super::native::{l2_normalize, Linear};
use super::tokenize::{Encoded, TextTokenizer};
use crate::error::{Error, Result};
use crate::model::config::ColbertParams;
use crate::model::{ModelWeights, Precision};

/// Token vectors of one text: `rows × dim` values, row-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenMatrix {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl TokenMatrix {
    pub fn rows(&self) -> usize {
        if self.dim == 0 { 0 } else { self.data.len() / self.dim }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The mean of the rows, L2-normalised: one vector standing for the text (what a
    /// single-vector index of a late-interaction model stores).
    pub fn mean_normalized(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        for r in 0..self.rows() {
            v.iter_mut().zip(self.row(r)).for_each(|(a, b)| *a += b);
        }
        l2_normalize(&mut v);
        v
    }
}

/// MaxSim: for each query token the largest dot product with any document token, summed.
/// A document without tokens scores 0; a dimension mismatch scores 0 as well.
pub fn maxsim(query: &TokenMatrix, doc: &TokenMatrix) -> f32 {
    if query.dim != doc.dim || doc.rows() == 0 {
        return 0.0;
    }
    let mut total = 0f32;
    for q in 0..query.rows() {
        let qr = query.row(q);
        let mut best = f32::NEG_INFINITY;
        for d in 0..doc.rows() {
            let s: f32 = qr.iter().zip(doc.row(d)).map(|(a, b)| a * b).sum();
            best = best.max(s);
        }
        total += best;
    }
    total
}

/// MaxSim of a query against int8 token codes (`codes`: rows × dim, `scales`: one per row;
/// value = code × scale), without dequantizing the matrix.
pub fn maxsim_i8(query: &TokenMatrix, codes: &[i8], scales: &[f32]) -> f32 {
    let dim = query.dim;
    if dim == 0 || scales.is_empty() || codes.len() != scales.len() * dim {
        return 0.0;
    }
    // All query × document token dot products in one GEMM over the codes (as f32), then
    // each column scaled by its token's scale before the row maxima.
    let (qn, rows) = (query.rows(), scales.len());
    let doc: Vec<f32> = codes.iter().map(|&c| c as f32).collect();
    let mut s = vec![0f32; qn * rows];
    super::kernels::gemm_f32_strided(qn, rows, dim, &mut s, rows, &query.data, dim, 1, &doc, 1, dim);
    s.chunks_exact(rows)
        .map(|row| row.iter().zip(scales).map(|(v, sc)| v * sc).fold(f32::NEG_INFINITY, f32::max))
        .sum()
}

/// Quantizes token vectors to int8, one symmetric scale per token (max |value| / 127).
pub fn quantize_tokens(m: &TokenMatrix) -> (Vec<i8>, Vec<f32>) {
    let mut codes = Vec::with_capacity(m.data.len());
    let mut scales = Vec::with_capacity(m.rows());
    for r in 0..m.rows() {
        let row = m.row(r);
        let max = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = if max > 0.0 && max.is_finite() { max / 127.0 } else { 1.0 };
        scales.push(scale);
        codes.extend(row.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
    }
    (codes, scales)
}

/// The late-interaction head of a loaded model: its settings, tokenizers truncating at the
/// query and document lengths, and the projection.
pub(crate) struct ColbertHead {
    pub params: ColbertParams,
    query_tok: TextTokenizer,
    doc_tok: TextTokenizer,
    proj: Linear,
}

impl ColbertHead {
    pub fn new(weights: &ModelWeights, params: &ColbertParams, precision: Precision) -> Result<Self> {
        // The marker token is inserted after tokenization, so the tokenizer leaves room for it.
        let room = |len: usize, prefix: Option<u32>| len.saturating_sub(prefix.is_some() as usize).max(2);
        let query_tok = TextTokenizer::from_json(&weights.tokenizer_json, room(params.query_length, params.query_prefix_id))?;
        let doc_tok = TextTokenizer::from_json(&weights.tokenizer_json, room(params.document_length, params.document_prefix_id))?;
        let proj = Linear::load(weights, &["colbert.proj"], precision)?;
        if proj.n() != params.dim {
            return Err(Error::tensor("colbert.proj.weight", format!("{} output rows, expected {}", proj.n(), params.dim)));
        }
        Ok(ColbertHead { params: params.clone(), query_tok, doc_tok, proj })
    }

    /// The tokenizer of documents, truncating to `document_length` less the marker.
    pub fn document_tokenizer(&self) -> &TextTokenizer {
        &self.doc_tok
    }

    /// Token inputs as PyLate builds them: the marker after the first token; queries padded
    /// with the mask token to `query_length` when expansion is on.
    pub fn encode(&self, texts: &[&str], is_query: bool) -> Result<Vec<Encoded>> {
        let p = &self.params;
        let (tok, prefix) = if is_query { (&self.query_tok, p.query_prefix_id) } else { (&self.doc_tok, p.document_prefix_id) };
        let mut enc = if p.lowercase {
            let lower: Vec<String> = texts.iter().map(|t| t.to_lowercase()).collect();
            tok.encode(&lower.iter().map(String::as_str).collect::<Vec<_>>())?
        } else {
            tok.encode(texts)?
        };
        for e in &mut enc {
            if let Some(id) = prefix {
                let at = e.ids.len().min(1);
                e.ids.insert(at, id);
                e.type_ids.insert(at, 0);
            }
            if is_query && p.query_expansion && e.ids.len() < p.query_length {
                let pad = p.query_length - e.ids.len();
                e.ids.extend(std::iter::repeat_n(p.mask_token_id, pad));
                e.type_ids.extend(std::iter::repeat_n(0, pad));
            }
        }
        Ok(enc)
    }

    /// Whether queries' expansion tokens are hidden from attention (keys limited to the real
    /// tokens).
    pub fn masks_expansion(&self, is_query: bool) -> bool {
        is_query && self.params.query_expansion && !self.params.attend_to_expansion
    }

    /// How many leading tokens of `e` the others may attend to: all but the trailing
    /// expansion tokens when those are hidden.
    pub fn key_len(&self, e: &Encoded, is_query: bool) -> usize {
        if !self.masks_expansion(is_query) {
            return e.ids.len();
        }
        let trailing = e.ids.iter().rev().take_while(|&&id| id == self.params.mask_token_id).count();
        (e.ids.len() - trailing).max(1)
    }

    /// Token vectors from the encoder's hidden states of `batch` (`[sum of lengths, hidden]`):
    /// projected, L2-normalised per token; documents lose their skiplist tokens.
    pub fn finish(&self, hidden: &[f32], batch: &[Encoded], is_query: bool) -> Vec<TokenMatrix> {
        let total: usize = batch.iter().map(|e| e.ids.len()).sum();
        let dim = self.params.dim;
        let mut projected = self.proj.forward(hidden, total);
        let mut out = Vec::with_capacity(batch.len());
        let mut row = 0;
        for e in batch {
            let mut data = Vec::with_capacity(e.ids.len() * dim);
            for (i, id) in e.ids.iter().enumerate() {
                let v = &mut projected[(row + i) * dim..(row + i + 1) * dim];
                if !is_query && self.params.skiplist.binary_search(id).is_ok() {
                    continue;
                }
                l2_normalize(v);
                data.extend_from_slice(v);
            }
            row += e.ids.len();
            out.push(TokenMatrix { dim, data });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxsim_takes_best_match_per_query_token() {
        let q = TokenMatrix { dim: 2, data: vec![1.0, 0.0, 0.0, 1.0] };
        let d = TokenMatrix { dim: 2, data: vec![0.6, 0.8, 1.0, 0.0, 0.0, -1.0] };
        assert!((maxsim(&q, &d) - 1.8).abs() < 1e-6);
        assert_eq!(maxsim(&q, &TokenMatrix { dim: 2, data: vec![] }), 0.0);
        assert_eq!(maxsim(&q, &TokenMatrix { dim: 3, data: vec![1.0; 3] }), 0.0);
        let (c, s) = quantize_tokens(&d);
        assert!((maxsim_i8(&q, &c, &s) - 1.8).abs() < 2e-2);
        assert_eq!(maxsim_i8(&q, &c[1..], &s), 0.0);
    }
}
