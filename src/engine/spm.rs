//! SentencePiece-style vocabularies (GGUF tokenizer model `llama`, as Gemma ships): pieces with
//! scores and no merge list. Encoding follows llama.cpp's SPM tokenizer, which the tests hold
//! it to id for id: spaces become `▁`, the text starts as one symbol per character, and the
//! adjacent pair whose concatenation is the highest-scoring piece merges first (the leftmost
//! on a tie) until no pair forms a piece; a character that is no piece falls back to its
//! bytes' `<0xXX>` tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

const SPACE: &str = "\u{2581}";

pub struct Spm {
    scores: Vec<f32>,
    /// The `<0xXX>` token of each byte, where the vocabulary has one.
    byte_tokens: [Option<u32>; 256],
    unknown: Option<u32>,
}

/// A candidate merge of two adjacent symbols; stale once either has changed.
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Pair {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Pair {}
impl PartialOrd for Pair {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pair {
    /// Higher score first, then the leftmost (a max-heap pops the greatest).
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// A span of the escaped text; `len` 0 once merged into its left neighbour.
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl Spm {
    /// `tokens` and `scores` as the GGUF holds them; `is_byte[i]` for `<0xXX>` tokens.
    pub fn new(
        tokens: &[String],
        scores: Vec<f32>,
        is_byte: &[bool],
        unknown: Option<u32>,
    ) -> Self {
        let mut byte_tokens = [None; 256];
        for (i, t) in tokens.iter().enumerate() {
            if is_byte.get(i).copied().unwrap_or(false)
                && let Some(b) = parse_byte_token(t)
            {
                byte_tokens[b as usize] = Some(i as u32);
            }
        }
        Self {
            scores,
            byte_tokens,
            unknown,
        }
    }

    /// Encodes one run of ordinary text (no special tokens in it) starting at byte `base` of
    /// the caller's text; `ids` maps a piece to its token; `offsets` gets each token's byte
    /// range in the caller's text. `space_prefix` puts a `▁` before the
    /// text (vocabularies that ask for it, after the start or a special token), which covers no
    /// byte of the text.
    pub fn encode(
        &self,
        ids: &HashMap<String, u32>,
        text: &str,
        base: usize,
        space_prefix: bool,
        out: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
    ) {
        // The escaped text, and for each of its character starts the original byte offset.
        let mut esc = String::with_capacity(text.len() + text.len() / 2 + SPACE.len());
        let mut origin = Vec::with_capacity(text.len() + 1);
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len() + 1);
        let prefix = space_prefix.then_some((0, ' '));
        for (at, c) in prefix.into_iter().chain(text.char_indices()) {
            let start = esc.len();
            if c == ' ' {
                esc.push_str(SPACE);
            } else {
                esc.push(c);
            }
            origin.resize(esc.len(), at);
            let i = symbols.len();
            symbols.push(Symbol {
                start,
                len: esc.len() - start,
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                symbols[i - 1].next = Some(i);
            }
        }
        origin.push(text.len());

        let mut heap = BinaryHeap::new();
        let piece = |s: &[Symbol], l: usize, r: usize| &esc[s[l].start..s[r].start + s[r].len];
        let consider = |heap: &mut BinaryHeap<Pair>, s: &[Symbol], l: usize, r: usize| {
            if let Some(&id) = ids.get(piece(s, l, r)) {
                heap.push(Pair {
                    score: self.scores.get(id as usize).copied().unwrap_or(f32::MIN),
                    left: l,
                    right: r,
                    len: s[l].len + s[r].len,
                });
            }
        };
        for r in 1..symbols.len() {
            consider(&mut heap, &symbols, r - 1, r);
        }
        while let Some(p) = heap.pop() {
            let (l, r) = (p.left, p.right);
            if symbols[l].len == 0
                || symbols[r].len == 0
                || symbols[l].len + symbols[r].len != p.len
            {
                continue;
            }
            symbols[l].len += symbols[r].len;
            symbols[r].len = 0;
            symbols[l].next = symbols[r].next;
            if let Some(n) = symbols[r].next {
                symbols[n].prev = Some(l);
            }
            if let Some(pv) = symbols[l].prev {
                consider(&mut heap, &symbols, pv, l);
            }
            if let Some(n) = symbols[l].next {
                consider(&mut heap, &symbols, l, n);
            }
        }

        let mut at = (!symbols.is_empty()).then_some(0);
        while let Some(i) = at {
            let s = &symbols[i];
            let span = &esc[s.start..s.start + s.len];
            let range = (base + origin[s.start], base + origin[s.start + s.len]);
            if let Some(&id) = ids.get(span) {
                out.push(id);
                offsets.push(range);
            } else {
                // Only a single character can be no piece: merges always form pieces.
                for b in span.bytes() {
                    if let Some(id) = self.byte_tokens[b as usize].or(self.unknown) {
                        out.push(id);
                        offsets.push(range);
                    }
                }
            }
            at = s.next;
        }
    }
}

/// The byte a `<0xXX>` token stands for.
pub fn parse_byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}

/// A piece's text with `▁` turned back into spaces.
pub fn unescape(piece: &str) -> String {
    piece.replace(SPACE, " ")
}
