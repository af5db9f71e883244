//! Reranking: a cross-encoder reads (query, passage) pairs for the retriever's top candidates,
//! and its score is interpolated with the retriever's after putting both on one scale
//! (min-max over the reranked candidates). Owns the default reranker built into the binary.

use crate::device::DeviceChoice;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::fuse::min_max;
use crate::model::{Head, ModelWeights, Precision};

/// A loaded cross-encoder.
pub struct Reranker {
    model: Embedder,
}

impl Reranker {
    pub fn new(weights: &ModelWeights, precision: Precision, device: DeviceChoice) -> Result<Self> {
        if weights.config.head != Head::Classifier {
            return Err(Error::Unsupported(format!(
                "{} is not a cross-encoder (it has no classifier head)",
                weights.source
            )));
        }
        Ok(Reranker { model: Embedder::new(weights, precision, device)? })
    }

    /// The reranker built into the binary.
    pub fn default_weights() -> Result<ModelWeights> {
        // Its word-embedding table is the default model's (frozen in training), stored once.
        let base = ModelWeights::embedded_default()?;
        let mut w = crate::model::format::read_embedded_sharing(
            crate::model::embedded::DEFAULT_RERANKER,
            "<embedded reranker>",
            &base,
            false,
        )?;
        w.source = "embedded reranker".into();
        Ok(w)
    }

    pub fn describe(&self) -> String {
        self.model.describe()
    }

    /// Tokens the model reads for one (query, passage) pair, special tokens included, before
    /// truncation.
    pub fn count_pair_tokens(&self, query: &str, passage: &str) -> Result<usize> {
        // [CLS] query [SEP] passage [SEP]: each alone has its own [CLS] and [SEP].
        let t = self.model.tokenizer();
        Ok(t.count_tokens(query)? + t.count_tokens(passage)? - 1)
    }

    /// Relevance logits of `passages` for `query`, in input order.
    pub fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>> {
        let pairs: Vec<(&str, &str)> = passages.iter().map(|p| (query, *p)).collect();
        self.model.score_pairs(&pairs)
    }
}

/// The default [`gate`]: the built-in reranker's scores of one query's candidates must spread
/// at least this much (standard deviation of the logits) for it to reorder them. Chosen with
/// `ponder eval --rerank --run-out` on SciFact, held-out SQuAD and the two reasoning sets
/// (top 20, weight 0.3): ungated reranking lowered three of the four (73.09 → 72.75,
/// 67.82 → 66.93, 24.07 → 21.89 nDCG@10; SQuAD 88.10 → 89.07); gated at 1.0 none went down
/// (73.36, 67.89, 24.18, 89.04). Flat scores mean the reranker cannot tell the candidates
/// apart, as on long reasoning queries it has to truncate.
pub const DEFAULT_MIN_SPREAD: f32 = 1.0;

/// Whether reranker `scores` spread enough (standard deviation ≥ `min_spread`) to be used.
/// `min_spread` 0 always reranks.
pub fn gate(scores: &[f32], min_spread: f32) -> bool {
    if min_spread <= 0.0 {
        return true;
    }
    if scores.len() < 2 {
        return false;
    }
    let n = scores.len() as f64;
    let mean = scores.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
    let var = scores.iter().map(|&s| (f64::from(s) - mean).powi(2)).sum::<f64>() / n;
    var.sqrt() >= f64::from(min_spread)
}

/// [`interpolate`] when the scores pass the [`gate`]; otherwise the retriever's ranking.
pub fn interpolate_gated(ranked: &[(u64, f32)], scores: &[f32], weight: f32, min_spread: f32) -> Vec<(u64, f32)> {
    if gate(scores, min_spread) {
        interpolate(ranked, scores, weight)
    } else {
        ranked.to_vec()
    }
}

/// Interpolates reranker scores (`scores[i]` for `ranked[i]`, `i < scores.len()`) with the
/// retriever's: `weight * rerank + (1 - weight) * retriever`, both min-max normalised over the
/// reranked candidates. Candidates past the reranked prefix keep their order below it.
pub fn interpolate(ranked: &[(u64, f32)], scores: &[f32], weight: f32) -> Vec<(u64, f32)> {
    let n = scores.len().min(ranked.len());
    if n == 0 {
        return ranked.to_vec();
    }
    let reranked: Vec<(u64, f32)> = ranked[..n].iter().zip(scores).map(|((id, _), s)| (*id, *s)).collect();
    let (r, s) = (min_max(&ranked[..n]), min_max(&reranked));
    let mut head: Vec<(u64, f32)> =
        r.iter().zip(&s).map(|((id, r), (_, s))| (*id, weight * s + (1.0 - weight) * r)).collect();
    head.sort_by(|a, b| b.1.total_cmp(&a.1));
    // The tail stays in retriever order, strictly below every reranked score.
    let tail = ranked[n..].iter().enumerate().map(|(j, (id, _))| (*id, -1.0 - j as f32));
    head.into_iter().chain(tail).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_scores_leave_the_ranking_alone() {
        let ranked = vec![(1, 0.9), (2, 0.8), (3, 0.7)];
        let flat = [0.1, 0.3, 0.2];
        let spread = [-3.0, 0.0, 3.0];
        assert_eq!(interpolate_gated(&ranked, &flat, 0.3, 1.0), ranked);
        let r = interpolate_gated(&ranked, &spread, 0.9, 1.0);
        assert_eq!(r[0].0, 3, "{r:?}");
        // 0 turns the gate off.
        assert_eq!(interpolate_gated(&ranked, &flat, 1.0, 0.0)[0].0, 2);
        assert!(!gate(&[5.0], 1.0) && gate(&[5.0], 0.0));
    }

    #[test]
    fn interpolation_weights_both_sides() {
        let ranked = vec![(1, 0.9), (2, 0.5), (3, 0.1), (4, 0.05)];
        let scores = [0.0, 1.0, 2.0];
        // Retriever only: order unchanged.
        let ids: Vec<u64> = interpolate(&ranked, &scores, 0.0).iter().map(|r| r.0).collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        // Reranker only: reranked prefix reversed, tail after it.
        let ids: Vec<u64> = interpolate(&ranked, &scores, 1.0).iter().map(|r| r.0).collect();
        assert_eq!(ids, vec![3, 2, 1, 4]);
        // Half and half: 1 -> 0.5, 2 -> 0.5*0.5+0.5*0.5=0.5, 3 -> 0.5; ties keep retriever order.
        let out = interpolate(&ranked, &scores, 0.5);
        assert!((out[0].1 - 0.5).abs() < 1e-6 && (out[2].1 - 0.5).abs() < 1e-6);
        assert_eq!(out[3].0, 4);
        assert!(out[3].1 < out[2].1);
    }

    #[test]
    fn constant_scores_do_not_divide_by_zero() {
        let ranked = vec![(7, 1.0), (8, 1.0)];
        let out = interpolate(&ranked, &[3.0, 3.0], 0.5);
        assert!(out.iter().all(|r| r.1.is_finite()));
    }
}
