package tokenizer

import (
	"sort"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// nfcNormalizer is the "NFC" normalizer of tokenizer.json.
//
// The text it produces is plain Unicode NFC, but the byte offsets HF reports for normalized
// text come from how its Rust crate (unicode-normalization-alignments) walks the string: each
// output character carries a change count (0 replaces the next input character, 1 is inserted,
// -n replaces the next character and drops n more), and an output character takes the
// original span of the input character it replaces. So "e\u0301" becomes "é" aligned to the
// "e" alone. To give the same offsets, the slow path below replays that walk: canonical
// decomposition, stable reordering of combining marks, then pairwise recomposition, with
// Unicode data from golang.org/x/text. Text already in NFC (nearly all of it) skips all this.
type nfcNormalizer struct{}

// normalizer rewrites a piece of text before added tokens and words are looked for in it.
type normalizer interface {
	// normalize returns the normalized s and, for each byte of the result, the span it comes
	// from in the text where s starts at base. A nil alignment means s is unchanged.
	normalize(s string, base int) (string, []span)
}

func (nfcNormalizer) normalize(s string, base int) (string, []span) {
	if isASCII(s) || norm.NFC.QuickSpanString(s) == len(s) {
		return s, nil
	}
	chars := decomposeCanonical(s)
	chars = recompose(chars)
	return transform(s, base, chars)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// changedChar is one character of a normalization's output with its change count.
type changedChar struct {
	r      rune
	change int
}

// decomposeCanonical returns the canonical decomposition of s with combining marks in
// canonical order; the first character of each input character's decomposition has change 0
// and the others 1. Reordering is a stable sort of each run of non-starters by combining class.
func decomposeCanonical(s string) []changedChar {
	out := make([]changedChar, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if h, ok := decomposeHangul(r); ok {
			for k, jamo := range h {
				out = append(out, changedChar{jamo, min(k, 1)})
			}
		} else if d := norm.NFD.PropertiesString(s[i:]).Decomposition(); d != nil {
			for k := 0; len(d) > 0; k++ {
				dr, dsize := utf8.DecodeRune(d)
				out = append(out, changedChar{dr, min(k, 1)})
				d = d[dsize:]
			}
		} else {
			out = append(out, changedChar{r, 0})
		}
		i += size
	}
	for i := 0; i < len(out); {
		if combiningClass(out[i].r) == 0 {
			i++
			continue
		}
		j := i
		for j < len(out) && combiningClass(out[j].r) != 0 {
			j++
		}
		run := out[i:j]
		sort.SliceStable(run, func(a, b int) bool { return combiningClass(run[a].r) < combiningClass(run[b].r) })
		i = j
	}
	return out
}

const (
	hangulSBase  = 0xAC00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11A7
	hangulTCount = 28
	hangulNCount = 588
	hangulSCount = 11172
)

// decomposeHangul decomposes a precomposed Hangul syllable into its jamo (x/text's tables
// leave these to the algorithm).
func decomposeHangul(r rune) ([]rune, bool) {
	if r < hangulSBase || r >= hangulSBase+hangulSCount {
		return nil, false
	}
	idx := r - hangulSBase
	l := hangulLBase + idx/hangulNCount
	v := hangulVBase + (idx%hangulNCount)/hangulTCount
	if t := idx % hangulTCount; t != 0 {
		return []rune{l, v, hangulTBase + t}, true
	}
	return []rune{l, v}, true
}

func combiningClass(r rune) uint8 {
	var buf [utf8.UTFMax]byte
	return norm.NFD.Properties(utf8.AppendRune(buf[:0], r)).CCC()
}

// composePairs caches compose: text meets few distinct pairs, but hostile input could bring
// many, so the cache stops growing at maxComposePairs.
var (
	composePairs     sync.Map // uint64(a)<<32|uint64(b) -> rune (-1: none)
	composePairCount atomic.Int64
)

const maxComposePairs = 1 << 14

// compose returns the primary composite of a followed by b, if there is one.
func compose(a, b rune) (rune, bool) {
	key := uint64(a)<<32 | uint64(b)
	if v, ok := composePairs.Load(key); ok {
		r := v.(rune)
		return r, r >= 0
	}
	composed := norm.NFC.String(string([]rune{a, b}))
	r := rune(-1)
	if c, size := utf8.DecodeRuneInString(composed); size == len(composed) && c != utf8.RuneError {
		r = c
	}
	if composePairCount.Add(1) <= maxComposePairs {
		composePairs.Store(key, r)
	}
	return r, r >= 0
}

// recompose is the canonical composition step, written as the same state machine as the Rust
// crate so that change counts add up the same way: a composition absorbs the second
// character, so the composite's change is first.change + second.change - 1.
func recompose(in []changedChar) []changedChar {
	out := make([]changedChar, 0, len(in))
	var (
		buffer   []changedChar
		composee changedChar
		have     bool
		lastCCC  = -1 // -1: none since the composee
	)
	for _, ch := range in {
		class := int(combiningClass(ch.r))
		if !have {
			if class != 0 {
				out = append(out, ch)
				continue
			}
			composee, have = ch, true
			continue
		}
		if lastCCC < 0 {
			if r, ok := compose(composee.r, ch.r); ok {
				composee = changedChar{r, composee.change + ch.change - 1}
				continue
			}
			if class == 0 {
				out = append(out, composee)
				composee = ch
				continue
			}
			buffer = append(buffer, ch)
			lastCCC = class
			continue
		}
		if lastCCC >= class {
			// ch is blocked from the composee.
			if class == 0 {
				out = append(out, composee)
				out = append(out, buffer...)
				buffer = buffer[:0]
				composee = ch
				lastCCC = -1
				continue
			}
			buffer = append(buffer, ch)
			lastCCC = class
			continue
		}
		if r, ok := compose(composee.r, ch.r); ok {
			composee = changedChar{r, composee.change + ch.change - 1}
			continue
		}
		buffer = append(buffer, ch)
		lastCCC = class
	}
	// At the end the Rust iterator emits the composee, then the marks blocked from it.
	if have {
		out = append(out, composee)
	}
	return append(out, buffer...)
}

// transform builds the normalized string and its alignment from the change-annotated
// characters, walking the characters of the old string s (which starts at base) exactly as
// HF's NormalizedString::transform does.
func transform(s string, base int, chars []changedChar) (string, []span) {
	// align is the span of the character holding byte i of s; HF gives an inserted character
	// at the very start the empty span at the start.
	align := func(i int) span {
		if i < 0 {
			return span{int32(base), int32(base)}
		}
		start := i
		for start > 0 && isContinuation(s[start]) {
			start--
		}
		return span{int32(base + start), int32(base + start + charLenAt(s, start))}
	}
	out := make([]byte, 0, len(s)+8)
	outAlign := make([]span, 0, len(s)+8)
	offset := 0 // byte position in s of the next character to be replaced
	for _, c := range chars {
		var a span
		if c.change > 0 {
			if offset < 1 {
				a = align(-1)
			} else {
				a = align(offset - 1)
			}
		} else {
			a = align(offset)
			offset += charLenAt(s, offset)
			for range -c.change {
				offset += charLenAt(s, offset)
			}
		}
		out = utf8.AppendRune(out, c.r)
		for range utf8.RuneLen(c.r) {
			outAlign = append(outAlign, a)
		}
	}
	return string(out), outAlign
}

func charLenAt(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	_, size := utf8.DecodeRuneInString(s[i:])
	return size
}
