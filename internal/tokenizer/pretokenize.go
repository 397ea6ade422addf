package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// preTokenizer splits a normalized piece of text into words, the units the model encodes.
type preTokenizer interface {
	// appendWords appends the [start, end) byte range of each word of s to dst, in order. The
	// words cover s exactly.
	appendWords(dst []int32, s string) []int32
}

// byteLevel is the ByteLevel pre-tokenizer. Its byte-to-character mapping is folded into the
// BPE model (which works on raw bytes, see bpe.go); what is left here is the GPT-2 split.
type byteLevel struct {
	useRegex bool
}

func (p byteLevel) appendWords(dst []int32, s string) []int32 {
	if !p.useRegex {
		if len(s) == 0 {
			return dst
		}
		return append(dst, 0, int32(len(s)))
	}
	return appendGPT2Words(dst, s)
}

// Character classes of the GPT-2 pattern.
const (
	classOther  = iota // [^\s\p{L}\p{N}]
	classLetter        // \p{L}
	classNumber        // \p{N}
	classSpace         // \s
)

var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for c := range utf8.RuneSelf {
		t[c] = classify(rune(c))
	}
	return t
}()

// classify gives a character's class as Oniguruma (HF's regex engine) sees it: \s is the
// Unicode White_Space set, which is what unicode.IsSpace tests.
func classify(r rune) uint8 {
	switch {
	case unicode.IsSpace(r):
		return classSpace
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	}
	return classOther
}

// classAt returns the class and byte size of the character at s[i].
func classAt(s string, i int) (uint8, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	return classify(r), size
}

// appendGPT2Words splits s as HF's ByteLevel pre-tokenizer does with the GPT-2 pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// written out by hand because Go's regexp has no lookahead. At each position the first
// alternative that matches wins (Perl/Oniguruma semantics), so:
//   - a contraction ('s 't 're 've 'm 'll 'd, lower case only) is a word;
//   - otherwise a run of letters, of numbers or of other characters is a word, taking one
//     ordinary space (U+0020, not any whitespace) before it;
//   - a whitespace run reaching the end of s is one word; a longer run followed by a
//     non-space gives all but its last character (\s+(?!\S) backtracks one), and that last
//     character then joins the next word if it is a space, or stands alone.
//
// Each position is visited a bounded number of times, so this is linear in len(s).
func appendGPT2Words(dst []int32, s string) []int32 {
	n := len(s)
	for i := 0; i < n; {
		if s[i] == '\'' {
			if l := contractionLen(s[i+1:]); l > 0 {
				dst = append(dst, int32(i), int32(i+1+l))
				i += 1 + l
				continue
			}
		}
		class, size := classAt(s, i)
		runStart := i
		if s[i] == ' ' && i+1 < n {
			if next, _ := classAt(s, i+1); next != classSpace {
				class, size, runStart = next, 0, i+1
			}
		}
		if class != classSpace {
			end := runStart + size
			if size == 0 { // the run starts after the optional space
				_, first := classAt(s, runStart)
				end = runStart + first
			}
			for end < n {
				c, sz := classAt(s, end)
				if c != class {
					break
				}
				end += sz
			}
			dst = append(dst, int32(i), int32(end))
			i = end
			continue
		}
		// A whitespace run: find its end and the start of its last character.
		end, last := i+size, i
		for end < n {
			c, sz := classAt(s, end)
			if c != classSpace {
				break
			}
			last = end
			end += sz
		}
		switch {
		case end == n || last == i:
			dst = append(dst, int32(i), int32(end))
			i = end
		default:
			dst = append(dst, int32(i), int32(last))
			i = last
		}
	}
	return dst
}

// contractionLen returns the length of the contraction suffix ('s 't 're 've 'm 'll 'd without
// the apostrophe) at the start of s, or 0.
func contractionLen(s string) int {
	if len(s) == 0 {
		return 0
	}
	switch s[0] {
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if len(s) > 1 && s[1] == 'e' {
			return 2
		}
	case 'l':
		if len(s) > 1 && s[1] == 'l' {
			return 2
		}
	}
	return 0
}
