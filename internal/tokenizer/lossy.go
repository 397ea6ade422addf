package tokenizer

import "unicode/utf8"

// span is a half-open byte range [start, end) of the caller's input.
type span struct{ start, end int32 }

// toValidUTF8 returns s with every maximal invalid subsequence replaced by one U+FFFD, exactly
// as Rust's String::from_utf8_lossy does (HF tokenizers only ever sees Rust strings), and, for
// each byte of the result, the span of s it came from. A maximal invalid subsequence is the
// longest prefix of a would-be UTF-8 sequence that is still valid so far: "\xE2\x82" followed by
// "A" is one invalid subsequence (a truncated 3-byte sequence), "\xC0" alone is one (a byte that
// never starts a sequence), "\xED\xA0\x80" is three (a surrogate: \xA0 cannot follow \xED).
// Go's strings.ToValidUTF8 (one U+FFFD per run of bad bytes) and range loops (one per byte) both
// differ. Valid input is returned as is with a nil alignment.
func toValidUTF8(s string) (string, []span) {
	if utf8.ValidString(s) {
		return s, nil
	}
	out := make([]byte, 0, len(s)+8)
	align := make([]span, 0, len(s)+8)
	i := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			out = append(out, c)
			align = append(align, span{int32(i), int32(i + 1)})
			i++
			continue
		}
		n := validSequenceLen(s[i:])
		if n > 0 {
			out = append(out, s[i:i+n]...)
			for range n {
				align = append(align, span{int32(i), int32(i + n)})
			}
			i += n
			continue
		}
		bad := invalidSequenceLen(s[i:])
		out = append(out, "\uFFFD"...)
		for range 3 {
			align = append(align, span{int32(i), int32(i + bad)})
		}
		i += bad
	}
	return string(out), align
}

// validSequenceLen returns the length of the valid multi-byte UTF-8 sequence at the start of
// s, or 0 if there is none.
func validSequenceLen(s string) int {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n <= 1 {
		return 0
	}
	return n
}

// invalidSequenceLen returns how many bytes of s (which starts with an invalid sequence) make
// up one maximal invalid subsequence, following Rust's core::str::lossy::Utf8Chunks.
func invalidSequenceLen(s string) int {
	next := func(i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	isCont := func(b byte) bool { return b >= 0x80 && b <= 0xBF }
	b0 := s[0]
	switch {
	case b0 >= 0xC2 && b0 <= 0xDF:
		return 1 // the continuation byte is missing or wrong
	case b0 >= 0xE0 && b0 <= 0xEF:
		b1 := next(1)
		ok := (b0 == 0xE0 && b1 >= 0xA0 && b1 <= 0xBF) ||
			(b0 >= 0xE1 && b0 <= 0xEC && isCont(b1)) ||
			(b0 == 0xED && b1 >= 0x80 && b1 <= 0x9F) ||
			(b0 >= 0xEE && isCont(b1))
		if !ok {
			return 1
		}
		return 2 // the third byte is missing or wrong
	case b0 >= 0xF0 && b0 <= 0xF4:
		b1 := next(1)
		ok := (b0 == 0xF0 && b1 >= 0x90 && b1 <= 0xBF) ||
			(b0 >= 0xF1 && b0 <= 0xF3 && isCont(b1)) ||
			(b0 == 0xF4 && b1 >= 0x80 && b1 <= 0x8F)
		if !ok {
			return 1
		}
		if !isCont(next(2)) {
			return 2
		}
		return 3 // the fourth byte is missing or wrong
	default:
		return 1 // 0x80-0xC1 and 0xF5-0xFF never start a sequence
	}
}
