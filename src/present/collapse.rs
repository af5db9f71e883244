//! Result diversity: chunks with identical or near-identical text in different files become one
//! hit that lists the other files (`also_in`), and one file contributes at most a few hits, so
//! that the top k covers different documents. A book exported both as chapters and as one
//! `print.html`, a note copied into two folders, or a vendored README would otherwise fill the
//! first page of results with the same text.
//!
//! Near-identical means that most word 3-shingles of the smaller chunk occur in the other
//! ([`NEAR_DUPLICATE`]): chunk boundaries differ between a chapter and the whole-book page, so
//! the texts overlap without being equal.

use std::collections::HashSet;

/// Share of the smaller chunk's shingles that must occur in the other chunk for the two to be
/// near duplicates.
pub const NEAR_DUPLICATE: f32 = 0.7;

/// One ranked chunk, best first in the input.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub path: &'a str,
    pub text: &'a str,
    /// How many chunks the chunk's file has: among duplicates the smallest file (the most
    /// specific document: a chapter rather than the whole book) is the one shown.
    pub file_chunks: u64,
}

/// How one hit is formed: which candidate is shown, and the other files holding the same text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The best-ranked member (its score is the group's).
    pub best: usize,
    /// The member shown.
    pub shown: usize,
    /// Other paths holding the same text, in rank order, without the shown one.
    pub also_in: Vec<String>,
}

/// What [`collapse`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Diversity {
    /// Collapse identical and near-identical chunks of different files.
    pub dedup: bool,
    /// Most hits from one file (0: no limit).
    pub per_file: usize,
}

/// Groups `cands` (best first) into at most `k` hits.
pub fn collapse(cands: &[Candidate], k: usize, how: Diversity) -> Vec<Group> {
    struct Open {
        members: Vec<usize>,
        shingles: HashSet<u64>,
    }
    let mut groups: Vec<Open> = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        // Shingles are only needed to find duplicates.
        let sh = if how.dedup { shingles(c.text) } else { HashSet::new() };
        if how.dedup {
            if let Some(g) = groups.iter_mut().find(|g| near_duplicate(&g.shingles, &sh)) {
                // The same text again: another file is listed with the hit; a second copy in a
                // file already listed adds nothing.
                if !g.members.iter().any(|&m| cands[m].path == c.path) {
                    g.members.push(i);
                }
                continue;
            }
        }
        groups.push(Open { members: vec![i], shingles: sh });
    }
    let mut per_path: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for g in groups {
        let shown = *g
            .members
            .iter()
            .min_by_key(|&&m| (cands[m].file_chunks, m))
            .expect("a group has a member");
        let n = per_path.entry(cands[shown].path).or_default();
        if how.per_file > 0 && *n >= how.per_file {
            continue;
        }
        *n += 1;
        let also_in = g.members.iter().filter(|&&m| m != shown).map(|&m| cands[m].path.to_string()).collect();
        out.push(Group { best: g.members[0], shown, also_in });
        if out.len() == k {
            break;
        }
    }
    out
}

/// Hashes of the word 3-shingles of `text` (lower-cased alphanumeric words; a CJK run counts
/// each character as a word). A text of fewer than three words is one shingle.
fn shingles(text: &str) -> HashSet<u64> {
    let mut words: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if w.chars().any(crate::index::lexical::is_cjk) {
            words.extend(w.chars().map(|c| c.to_string()));
        } else {
            words.push(w.to_lowercase());
        }
    }
    let hash = |ws: &[String]| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ws.hash(&mut h);
        h.finish()
    };
    if words.len() < 3 {
        return std::iter::once(hash(&words)).collect();
    }
    words.windows(3).map(hash).collect()
}

fn near_duplicate(a: &HashSet<u64>, b: &HashSet<u64>) -> bool {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if small.is_empty() {
        return false;
    }
    let common = small.iter().filter(|h| large.contains(h)).count();
    common as f32 >= NEAR_DUPLICATE * small.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand<'a>(path: &'a str, text: &'a str, file_chunks: u64) -> Candidate<'a> {
        Candidate { path, text, file_chunks }
    }

    const CHAPTER: &str = "Ownership is a set of rules that govern how a Rust program manages memory. \
        All programs have to manage the way they use a computer's memory while running.";

    #[test]
    fn identical_and_near_identical_text_collapse_into_the_smaller_file() {
        // The whole-book page holds the chapter's text inside a longer chunk, cut differently.
        let book = format!("Chapter 4. {CHAPTER} Some languages have garbage collection.");
        let cands = [
            cand("book/print.html", &book, 900),
            cand("book/ch04-01.html", CHAPTER, 12),
            cand("notes/other.md", "Borrowing lets code use a value without taking ownership of it.", 3),
            cand("copy/ch04-01.html", CHAPTER, 12),
        ];
        let groups = collapse(&cands, 10, Diversity { dedup: true, per_file: 0 });
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[0].best, 0);
        assert_eq!(groups[0].shown, 1, "the chapter is shown, not the whole book");
        assert_eq!(groups[0].also_in, vec!["book/print.html".to_string(), "copy/ch04-01.html".to_string()]);
        assert_eq!(groups[1], Group { best: 2, shown: 2, also_in: vec![] });
        // Without dedup every chunk is its own hit.
        assert_eq!(collapse(&cands, 10, Diversity { dedup: false, per_file: 0 }).len(), 4);
    }

    #[test]
    fn different_text_sharing_a_few_words_stays_apart() {
        let a = "The borrow checker compares scopes to determine whether all borrows are valid.";
        let b = "The borrow checker rejects this program because the scopes of the borrows overlap badly.";
        let cands = [cand("a.md", a, 1), cand("b.md", b, 1)];
        assert_eq!(collapse(&cands, 10, Diversity { dedup: true, per_file: 0 }).len(), 2);
    }

    #[test]
    fn per_file_cap_and_k() {
        let texts: Vec<String> = (0..6).map(|i| format!("distinct passage number {i} about topic {}", i * 7)).collect();
        let cands: Vec<Candidate> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| cand(if i < 4 { "big.md" } else { "small.md" }, t, 4))
            .collect();
        let g = collapse(&cands, 10, Diversity { dedup: true, per_file: 2 });
        let shown: Vec<usize> = g.iter().map(|g| g.shown).collect();
        assert_eq!(shown, vec![0, 1, 4, 5]);
        // One row per file.
        let g = collapse(&cands, 10, Diversity { dedup: true, per_file: 1 });
        assert_eq!(g.iter().map(|g| g.shown).collect::<Vec<_>>(), vec![0, 4]);
        // k bounds the output.
        assert_eq!(collapse(&cands, 3, Diversity { dedup: false, per_file: 0 }).len(), 3);
    }

    #[test]
    fn cjk_text_is_shingled_by_character() {
        let a = "東京は日本の首都であり、世界最大級の都市圏を形成している。";
        let b = "大阪は日本第二の都市圏の中心であり、商業の町として知られる。";
        let cands = [cand("a.md", a, 1), cand("b.md", b, 1), cand("c.md", a, 1)];
        let g = collapse(&cands, 10, Diversity { dedup: true, per_file: 0 });
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].also_in, vec!["c.md".to_string()]);
    }
}
