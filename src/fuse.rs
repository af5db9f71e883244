//! Fusion: combining ranked candidate lists (dense, lexical, several queries) into one.

/// How a dense and a lexical list are combined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fusion {
    /// Reciprocal-rank fusion: `sum 1 / (k + rank)`.
    Rrf { k: f32 },
    /// Min-max normalised scores, `w * dense + (1 - w) * lexical` (missing = 0).
    Weighted { dense_weight: f32 },
    /// Scores standardised per list (`(s - mean) / std` over the list),
    /// `w * dense + (1 - w) * lexical`; a chunk missing from a list gets that list's lowest.
    ZScore { dense_weight: f32 },
}

/// Dense weight of z-score fusion, the default.
pub const ZSCORE_DENSE_WEIGHT: f32 = 0.6;
/// Dense weight of min-max weighted fusion.
pub const WEIGHTED_DENSE_WEIGHT: f32 = 0.5;

/// The default, chosen with `ponder eval` on SciFact, held-out SQuAD and the two reasoning
/// sets (`scripts/eval-table.sh`): z-score fusion with dense weight 0.6 scored 73.09 / 88.10 /
/// 67.82 / 24.07 nDCG@10, min-max weighted 0.5 (the previous default, which had beaten RRF)
/// 72.54 / 88.03 / 66.39 / 24.06. Min-max lets one outlying score squeeze the rest of a list
/// into a narrow band; standardising keeps each list's spread.
impl Default for Fusion {
    fn default() -> Self {
        Fusion::ZScore { dense_weight: ZSCORE_DENSE_WEIGHT }
    }
}

fn sort_desc(mut v: Vec<(u64, f32)>) -> Vec<(u64, f32)> {
    v.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Reciprocal-rank fusion of any number of ranked lists (best first).
pub fn rrf(lists: &[Vec<(u64, f32)>], k: f32) -> Vec<(u64, f32)> {
    let mut acc: std::collections::HashMap<u64, f32> = std::collections::HashMap::new();
    for list in lists {
        for (rank, (id, _)) in list.iter().enumerate() {
            *acc.entry(*id).or_default() += 1.0 / (k + rank as f32 + 1.0);
        }
    }
    sort_desc(acc.into_iter().collect())
}

/// Scores mapped to [0, 1] by min-max over the list.
pub fn min_max(list: &[(u64, f32)]) -> Vec<(u64, f32)> {
    let (lo, hi) = list.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), (_, s)| (l.min(*s), h.max(*s)));
    let span = hi - lo;
    list.iter().map(|(id, s)| (*id, if span > 0.0 { (s - lo) / span } else { 1.0 })).collect()
}

/// Weighted sum of min-max normalised scores.
pub fn weighted(dense: &[(u64, f32)], lexical: &[(u64, f32)], dense_weight: f32) -> Vec<(u64, f32)> {
    let mut acc: std::collections::HashMap<u64, f32> = std::collections::HashMap::new();
    for (id, s) in min_max(dense) {
        *acc.entry(id).or_default() += dense_weight * s;
    }
    for (id, s) in min_max(lexical) {
        *acc.entry(id).or_default() += (1.0 - dense_weight) * s;
    }
    sort_desc(acc.into_iter().collect())
}

/// Scores standardised over the list: `(s - mean) / std` (0 when all scores are equal).
pub fn z_scores(list: &[(u64, f32)]) -> Vec<(u64, f32)> {
    if list.is_empty() {
        return Vec::new();
    }
    let n = list.len() as f64;
    let mean = list.iter().map(|(_, s)| f64::from(*s)).sum::<f64>() / n;
    let var = list.iter().map(|(_, s)| (f64::from(*s) - mean).powi(2)).sum::<f64>() / n;
    let sd = var.sqrt();
    list.iter()
        .map(|(id, s)| (*id, if sd > 0.0 { ((f64::from(*s) - mean) / sd) as f32 } else { 0.0 }))
        .collect()
}

/// Weighted sum of z-scored lists; a chunk missing from one list gets that list's lowest
/// z-score (it ranked below everything the list returned).
pub fn z_weighted(dense: &[(u64, f32)], lexical: &[(u64, f32)], dense_weight: f32) -> Vec<(u64, f32)> {
    let (zd, zl) = (z_scores(dense), z_scores(lexical));
    // An empty list contributes nothing.
    let low = |z: &[(u64, f32)]| z.iter().map(|x| x.1).reduce(f32::min).unwrap_or(0.0);
    let (low_d, low_l) = (low(&zd), low(&zl));
    let mut acc: std::collections::HashMap<u64, (Option<f32>, Option<f32>)> = std::collections::HashMap::new();
    for (id, z) in zd {
        acc.entry(id).or_default().0 = Some(z);
    }
    for (id, z) in zl {
        acc.entry(id).or_default().1 = Some(z);
    }
    sort_desc(
        acc.into_iter()
            .map(|(id, (d, l))| {
                (id, dense_weight * d.unwrap_or(low_d) + (1.0 - dense_weight) * l.unwrap_or(low_l))
            })
            .collect(),
    )
}

/// Fuses one dense and one lexical list.
pub fn fuse(dense: &[(u64, f32)], lexical: &[(u64, f32)], how: Fusion) -> Vec<(u64, f32)> {
    match how {
        Fusion::Rrf { k } => rrf(&[dense.to_vec(), lexical.to_vec()], k),
        Fusion::Weighted { dense_weight } => weighted(dense, lexical, dense_weight),
        Fusion::ZScore { dense_weight } => z_weighted(dense, lexical, dense_weight),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_rewards_agreement() {
        let a = vec![(1, 0.9), (2, 0.8), (3, 0.1)];
        let b = vec![(2, 12.0), (4, 11.0), (1, 3.0)];
        let f = rrf(&[a, b], 60.0);
        assert_eq!(f[0].0, 2); // ranks 2 and 1
        assert_eq!(f[1].0, 1); // ranks 1 and 3
        assert!((f[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn weighted_normalises_each_list() {
        let dense = vec![(1, 0.9), (2, 0.5)];
        let lex = vec![(2, 20.0), (3, 10.0)];
        let f = weighted(&dense, &lex, 0.5);
        // 1: 0.5*1 + 0 ; 2: 0.5*0 + 0.5*1 ; 3: 0
        assert_eq!(f.len(), 3);
        assert!((f.iter().find(|x| x.0 == 1).unwrap().1 - 0.5).abs() < 1e-6);
        assert!((f.iter().find(|x| x.0 == 2).unwrap().1 - 0.5).abs() < 1e-6);
        assert!(f.iter().find(|x| x.0 == 3).unwrap().1.abs() < 1e-6);
    }

    #[test]
    fn z_scores_keep_each_lists_spread() {
        // One outlier squeezes min-max scores of the rest into a narrow band; z-scores keep
        // their spread relative to the list's own deviation.
        let dense = vec![(1, 0.9), (2, 0.8), (3, 0.7)];
        let lex = vec![(4, 100.0), (2, 10.0), (3, 9.0), (5, 8.0)];
        let z = z_scores(&lex);
        let mean: f32 = z.iter().map(|x| x.1).sum::<f32>() / 4.0;
        let var: f32 = z.iter().map(|x| (x.1 - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
        let f = z_weighted(&dense, &lex, 0.6);
        assert_eq!(f.len(), 5);
        // Each chunk: 0.6 × its dense z + 0.4 × its lexical z, a missing one taking the list's lowest.
        let zd = z_scores(&dense);
        let z = |l: &[(u64, f32)], id| l.iter().find(|x| x.0 == id).map(|x| x.1);
        let low_l = z(&z_scores(&lex), 5).unwrap();
        let got = |id| f.iter().find(|x| x.0 == id).unwrap().1;
        assert!((got(1) - (0.6 * z(&zd, 1).unwrap() + 0.4 * low_l)).abs() < 1e-5);
        assert!((got(2) - (0.6 * z(&zd, 2).unwrap() + 0.4 * z(&z_scores(&lex), 2).unwrap())).abs() < 1e-5);
        assert!((got(4) - (0.6 * z(&zd, 3).unwrap() + 0.4 * z(&z_scores(&lex), 4).unwrap())).abs() < 1e-5);
        // 5 (last in lexical, missing from dense) comes last.
        assert_eq!(f.last().unwrap().0, 5);
        // A list of equal scores contributes nothing, not NaN.
        assert!(z_scores(&[(1, 2.0), (2, 2.0)]).iter().all(|x| x.1 == 0.0));
        assert!(z_weighted(&[], &[(1, 1.0)], 0.6)[0].1.is_finite());
    }
}
