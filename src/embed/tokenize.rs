//! Tokenization: the HF tokenizer with its own padding/truncation settings replaced by the
//! model's (truncate at `max_seq_len`, never pad: batching pads explicitly).

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

/// Token ids of one input, special tokens included.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

pub struct TextTokenizer {
    inner: Tokenizer,
    /// The same tokenizer without truncation, for token spans of whole documents.
    untruncated: Tokenizer,
    max_len: usize,
}

impl TextTokenizer {
    pub fn from_json(json: &[u8], max_len: usize) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(json).map_err(|e| Error::Tokenizer(e.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut untruncated = inner.clone();
        untruncated.with_truncation(None).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(TextTokenizer { inner, untruncated, max_len })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Encodes single texts (`[CLS] text [SEP]`).
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        let enc = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc
            .into_iter()
            .map(|e| Encoded { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().to_vec() })
            .collect())
    }

    /// Encodes pairs (`[CLS] a [SEP] b [SEP]`, token types 0/1), truncating the longer side first.
    pub fn encode_pairs(&self, pairs: &[(&str, &str)]) -> Result<Vec<Encoded>> {
        let inputs: Vec<tokenizers::EncodeInput> =
            pairs.iter().map(|(a, b)| (a.to_string(), b.to_string()).into()).collect();
        let enc = self.inner.encode_batch(inputs, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc
            .into_iter()
            .map(|e| Encoded { ids: e.get_ids().to_vec(), type_ids: e.get_type_ids().to_vec() })
            .collect())
    }

    /// How many special tokens (`[CLS]`, `[SEP]`, BOS, ...) encoding one text adds.
    pub fn added_special_tokens(&self) -> usize {
        let count = |special| self.untruncated.encode("a", special).map_or(0, |e| e.len());
        count(true).saturating_sub(count(false))
    }

    /// Number of tokens `text` has without truncation (special tokens included).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.untruncated.encode(text, true).map_err(|e| Error::Tokenizer(e.to_string()))?.len())
    }

    /// Byte spans of the model tokens of `text` (no special tokens, no truncation), as the
    /// chunker's `count` wants them. Long texts are cut at whitespace (a token boundary for
    /// BERT-style pre-tokenizers) into segments encoded in batches, so memory stays bounded for
    /// documents of many megabytes and the batches run in parallel. Should the tokenizer fail,
    /// the spans of whitespace-separated words stand in.
    pub fn token_spans(&self, text: &str) -> Vec<(usize, usize)> {
        self.spans(text, true)
    }

    /// [`token_spans`](Self::token_spans) computed on the calling thread alone, for a thread
    /// that must not hand work to the shared thread pool (the writer's low-priority reading
    /// thread: pool threads would run it at full priority, between the embedding's steps).
    pub fn token_spans_here(&self, text: &str) -> Vec<(usize, usize)> {
        self.spans(text, false)
    }

    fn spans(&self, text: &str, parallel: bool) -> Vec<(usize, usize)> {
        const SEGMENT_BYTES: usize = 32 * 1024;
        const SEGMENTS_PER_BATCH: usize = 64;
        let mut segments = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let mut end = (start + SEGMENT_BYTES).min(text.len());
            if end < text.len() {
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                let window = &text[start..end];
                if let Some(p) = window.rfind('\n').or_else(|| window.rfind([' ', '\t'])) {
                    if p > 0 {
                        end = start + p + 1;
                    }
                }
            }
            segments.push((start, end));
            start = end;
        }
        let mut spans = Vec::new();
        for group in segments.chunks(SEGMENTS_PER_BATCH) {
            let inputs: Vec<&str> = group.iter().map(|&(a, b)| &text[a..b]).collect();
            let encoded = if parallel {
                self.untruncated.encode_batch(inputs, false)
            } else {
                inputs.into_iter().map(|t| self.untruncated.encode(t, false)).collect()
            };
            match encoded {
                Ok(encodings) => {
                    for (enc, &(a, _)) in encodings.iter().zip(group) {
                        spans.extend(enc.get_offsets().iter().map(|&(s, e)| (a + s, a + e)));
                    }
                }
                Err(_) => {
                    for &(a, b) in group {
                        let mut word = None;
                        for (i, c) in text[a..b].char_indices() {
                            match (c.is_whitespace(), word) {
                                (true, Some(w)) => {
                                    spans.push((a + w, a + i));
                                    word = None;
                                }
                                (false, None) => word = Some(i),
                                _ => {}
                            }
                        }
                        if let Some(w) = word {
                            spans.push((a + w, b));
                        }
                    }
                }
            }
        }
        spans
    }
}
