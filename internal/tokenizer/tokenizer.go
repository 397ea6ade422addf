// Package tokenizer encodes text with a HuggingFace tokenizer.json, giving the same token ids
// and offsets as HF tokenizers (the Rust library) does, in pure Go.
//
// It implements what ModernBERT's tokenizer uses, and fails clearly (ErrUnsupported) on
// anything else: the NFC normalizer, the ByteLevel pre-tokenizer with the GPT-2 split, BPE
// (both merges formats), added tokens with all their flags, and the TemplateProcessing
// post-processor. The pipeline is HF's: added tokens that are not normalized are cut out of the
// raw text; each piece between them is normalized and the normalized added tokens are cut
// out; what is left is split into words and each word is encoded by the model.
//
// Text that is not valid UTF-8 is first made valid the way Rust's String::from_utf8_lossy
// does (one U+FFFD per maximal invalid subsequence); offsets still refer to the bytes given.
// Encoding is linear in the length of the text and safe for concurrent use.
package tokenizer

import "sync"

// Tokenizer encodes text. It is safe for concurrent use by many goroutines.
type Tokenizer struct {
	normalizer normalizer // nil: none
	pre        preTokenizer
	model      model
	raw, norm  *addedMatcher    // added tokens found in the raw and in the normalized text
	added      map[string]int32 // added token content -> id
	prefix     []int32          // the post-processor's ids before the sequence ([CLS])
	suffix     []int32          // and after it ([SEP])
	vocabSize  int
	scratch    sync.Pool // *scratch
}

// EncodeOptions says what Encode adds and where it cuts.
type EncodeOptions struct {
	AddSpecialTokens bool // the post-processor's tokens, [CLS] ... [SEP] for ModernBERT
	MaxLength        int  // 0 (or less) = no truncation; counts the special tokens, which are always kept
	TruncateLeft     bool // drop tokens from the start instead of the end
}

// Encoding is the result of Encode.
type Encoding struct {
	IDs []int32
	// Offsets are the [start, end) byte spans in the input of each token; special tokens
	// added by the post-processor have [0, 0]. A token that is part of a character (byte-level
	// BPE splits rare characters) spans the whole character, as in HF.
	Offsets     [][2]int
	TotalTokens int // len(IDs) before truncation
}

// scratch holds the buffers of one encoding, reused through a pool to avoid allocations.
type scratch struct {
	rawSegs, normSegs []segment
	content           []int32 // Encode's ids before the special tokens
	words             []int32 // word boundaries, pairs
	ends              []int32 // token ends within one word
	spans             []span
	tokIDs, tokEnds   []int32 // BPE output before caching
	symbols           []symbol
	heap              []pendingMerge
}

// maxPooledLen bounds the buffers kept for reuse: one huge input should not pin its scratch
// memory for the life of the process.
const maxPooledLen = 1 << 16

func (t *Tokenizer) putScratch(sc *scratch) {
	if cap(sc.symbols) > maxPooledLen || cap(sc.heap) > maxPooledLen || cap(sc.spans) > maxPooledLen ||
		cap(sc.content) > maxPooledLen || cap(sc.words) > maxPooledLen || cap(sc.tokIDs) > maxPooledLen ||
		cap(sc.tokEnds) > maxPooledLen || cap(sc.ends) > maxPooledLen || cap(sc.rawSegs) > maxPooledLen ||
		cap(sc.normSegs) > maxPooledLen {
		return
	}
	t.scratch.Put(sc)
}

// VocabSize is the number of ids the model's embedding table needs: the largest id of the
// vocabulary, the added tokens and the post-processor, plus one.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// SpecialID returns the id of a token given as written in tokenizer.json: an added token such
// as "[CLS]" or "[PAD]", or a vocabulary entry.
func (t *Tokenizer) SpecialID(token string) (int32, bool) {
	if id, ok := t.added[token]; ok {
		return id, true
	}
	return t.model.tokenID(token)
}

// Encode tokenizes text as HF's Tokenizer.encode does, with offsets.
func (t *Tokenizer) Encode(text string, opts EncodeOptions) Encoding {
	sc := t.scratch.Get().(*scratch)
	defer t.putScratch(sc)

	src, srcAlign := toValidUTF8(text)
	sc.spans = sc.spans[:0]
	content := t.appendContent(sc, sc.content[:0], &sc.spans, src)
	sc.content = content
	var prefix, suffix []int32
	if opts.AddSpecialTokens {
		prefix, suffix = t.prefix, t.suffix
	}
	lo, hi := truncateRange(len(content), len(prefix)+len(suffix), opts.MaxLength, opts.TruncateLeft)

	n := len(prefix) + (hi - lo) + len(suffix)
	enc := Encoding{
		IDs:         make([]int32, 0, n),
		Offsets:     make([][2]int, 0, n),
		TotalTokens: len(prefix) + len(content) + len(suffix),
	}
	enc.IDs = append(enc.IDs, prefix...)
	enc.IDs = append(enc.IDs, content[lo:hi]...)
	enc.IDs = append(enc.IDs, suffix...)
	for range prefix {
		enc.Offsets = append(enc.Offsets, [2]int{0, 0})
	}
	for _, s := range sc.spans[lo:hi] {
		enc.Offsets = append(enc.Offsets, inputSpan(s, srcAlign, len(text)))
	}
	for range suffix {
		enc.Offsets = append(enc.Offsets, [2]int{0, 0})
	}
	return enc
}

// AppendIDs is the fast path of Encode: it appends the ids of text, with special tokens, to
// dst, keeping at most maxLength of them (0 = all; the end is cut, the special tokens stay),
// and returns the grown slice and the number of ids before truncation. With a dst of enough
// capacity it does not allocate once the word cache is warm.
func (t *Tokenizer) AppendIDs(dst []int32, text string, maxLength int) (ids []int32, totalTokens int) {
	sc := t.scratch.Get().(*scratch)
	defer t.putScratch(sc)

	src, _ := toValidUTF8(text)
	dst = append(dst, t.prefix...)
	start := len(dst)
	dst = t.appendContent(sc, dst, nil, src)
	n := len(dst) - start
	_, hi := truncateRange(n, len(t.prefix)+len(t.suffix), maxLength, false)
	dst = append(dst[:start+hi], t.suffix...)
	return dst, len(t.prefix) + n + len(t.suffix)
}

// truncateRange returns which of n content tokens to keep so that, with nSpecial special
// tokens, at most maxLength remain (HF truncates before the post-processor adds its tokens,
// so those always stay, even when maxLength leaves no room for content).
func truncateRange(n, nSpecial, maxLength int, left bool) (lo, hi int) {
	if maxLength <= 0 || n+nSpecial <= maxLength {
		return 0, n
	}
	keep := max(maxLength-nSpecial, 0)
	if left {
		return n - keep, n
	}
	return 0, keep
}

// appendContent runs the pipeline (added tokens, normalizer, pre-tokenizer, model) over src,
// appending token ids to ids and, when spans is not nil, each token's span in src.
func (t *Tokenizer) appendContent(sc *scratch, ids []int32, spans *[]span, src string) []int32 {
	segs := t.raw.appendSegments(sc.rawSegs[:0], src)
	sc.rawSegs = segs
	for _, seg := range segs {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			if spans != nil {
				*spans = append(*spans, span{seg.start, seg.end})
			}
			continue
		}
		ids = t.appendPiece(sc, ids, spans, src[seg.start:seg.end], int(seg.start))
	}
	return ids
}

// appendPiece encodes a piece of src free of raw added tokens, starting at base.
func (t *Tokenizer) appendPiece(sc *scratch, ids []int32, spans *[]span, piece string, base int) []int32 {
	text, align := piece, []span(nil)
	if t.normalizer != nil {
		text, align = t.normalizer.normalize(piece, base)
	}
	segs := t.norm.appendSegments(sc.normSegs[:0], text)
	sc.normSegs = segs
	for _, seg := range segs {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			if spans != nil {
				*spans = append(*spans, srcSpan(text, align, base, int(seg.start), int(seg.end)))
			}
			continue
		}
		words := t.pre.appendWords(sc.words[:0], text[seg.start:seg.end])
		sc.words = words
		for w := 0; w < len(words); w += 2 {
			ws, we := int(seg.start+words[w]), int(seg.start+words[w+1])
			if spans == nil {
				ids, _ = t.model.appendWord(sc, text[ws:we], ids, nil, false)
				continue
			}
			var ends []int32
			ids, ends = t.model.appendWord(sc, text[ws:we], ids, sc.ends[:0], true)
			sc.ends = ends
			prev := ws
			for _, e := range ends {
				*spans = append(*spans, srcSpan(text, align, base, prev, ws+int(e)))
				prev = ws + int(e)
			}
		}
	}
	return ids
}

// srcSpan maps bytes [a, b) of a normalized piece to a span of src. With no alignment the
// piece is src from base on; a span that cuts a character is widened to the whole character,
// as HF's per-character alignments do.
func srcSpan(text string, align []span, base, a, b int) span {
	if align != nil {
		return span{align[a].start, align[b-1].end}
	}
	for a > 0 && isContinuation(text[a]) {
		a--
	}
	for b < len(text) && isContinuation(text[b]) {
		b++
	}
	return span{int32(base + a), int32(base + b)}
}

func isContinuation(b byte) bool { return b&0xC0 == 0x80 }

// inputSpan maps a span of src to the caller's input, through the alignment of the UTF-8
// repair (nil when the input was valid).
func inputSpan(s span, srcAlign []span, inputLen int) [2]int {
	if srcAlign == nil {
		return [2]int{int(s.start), int(s.end)}
	}
	at := func(i int32) int {
		if int(i) < len(srcAlign) {
			return int(srcAlign[i].start)
		}
		return inputLen
	}
	if s.start >= s.end {
		return [2]int{at(s.start), at(s.end)}
	}
	return [2]int{int(srcAlign[s.start].start), int(srcAlign[s.end-1].end)}
}
