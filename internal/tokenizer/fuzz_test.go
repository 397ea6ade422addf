package tokenizer

import "testing"

// FuzzEncode looks for inputs that panic or break the invariants of checkInvariants. Run it
// with go test -fuzz FuzzEncode ./internal/tokenizer; the seed corpus is the hard cases.
func FuzzEncode(f *testing.F) {
	tok := loadModernBERT(f)
	for _, text := range hardCases(f) {
		f.Add(text)
	}
	f.Add("\xED\xA0\x80 [CLS]\xC0 e\u0301 \xF0\x90\x80")
	decode := tokenDecoder(tok)
	f.Fuzz(func(t *testing.T, text string) {
		checkInvariants(t, tok, text, decode)
	})
}
