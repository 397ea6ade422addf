package tokenizer

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/text/unicode/norm"
)

func TestToValidUTF8LikeRustLossy(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{"Hello \xF0\x90\x80World", "Hello \uFFFDWorld"}, // truncated 4-byte sequence: one
		{"\xE2\x82A", "\uFFFDA"},                         // truncated 3-byte sequence: one
		{"\xC0\x80", "\uFFFD\uFFFD"},                     // overlong lead, then a lone continuation
		{"\xED\xA0\x80", "\uFFFD\uFFFD\uFFFD"},           // surrogate: \xA0 cannot follow \xED
		{"\xE0\x80", "\uFFFD\uFFFD"},                     // \xE0 needs \xA0-\xBF next
		{"\xF4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"}, // above U+10FFFF
		{"\xF1\x80\x80", "\uFFFD"},                       // truncated at the end
		{"a\xFFb\xFE", "a\uFFFDb\uFFFD"},
		{"\xC2", "\uFFFD"},
		{"\xC2A\xE2\x82\xAC", "\uFFFDA€"},
	} {
		got, align := toValidUTF8(c.in)
		if got != c.want {
			t.Errorf("toValidUTF8(%q) = %q, want %q", c.in, got, c.want)
		}
		if got != c.in && len(align) != len(got) {
			t.Errorf("toValidUTF8(%q): %d alignments for %d bytes", c.in, len(align), len(got))
		}
	}
}

func TestInvalidUTF8OffsetsPointIntoTheInput(t *testing.T) {
	tok := loadModernBERT(t)
	in := "ab \xE2\x82 cd\xFF"
	valid := "ab \uFFFD cd\uFFFD"
	got := tok.Encode(in, EncodeOptions{})
	want := tok.Encode(valid, EncodeOptions{})
	if !slices.Equal(got.IDs, want.IDs) {
		t.Fatalf("ids of %q = %v, want those of %q: %v", in, got.IDs, valid, want.IDs)
	}
	// The replacement characters stand for the invalid bytes they replaced.
	for i, off := range got.Offsets {
		if off[0] < 0 || off[1] > len(in) || off[0] >= off[1] {
			t.Fatalf("offset %d = %v outside the input (%d bytes)", i, off, len(in))
		}
	}
	last := got.Offsets[len(got.Offsets)-1]
	if last != [2]int{len(in) - 1, len(in)} {
		t.Errorf("last token (the replaced \\xFF) spans %v, want [%d %d]", last, len(in)-1, len(in))
	}
}

func TestNFCOffsetsFollowHF(t *testing.T) {
	tok := loadModernBERT(t)
	// HF aligns a composed character to the first character it was made from: "e\u0301" becomes
	// "é" spanning the "e" only, and the next token starts after the combining mark.
	composed := tok.Encode("école", EncodeOptions{})
	decomposed := tok.Encode("e\u0301cole", EncodeOptions{})
	if !slices.Equal(composed.IDs, decomposed.IDs) {
		t.Fatalf("NFD input encodes to %v, NFC to %v", decomposed.IDs, composed.IDs)
	}
	text, align := nfcNormalizer{}.normalize("e\u0301cole", 10)
	if text != "école" {
		t.Fatalf("NFC = %q", text)
	}
	want := []span{{10, 11}, {10, 11}, {13, 14}, {14, 15}, {15, 16}, {16, 17}}
	if !slices.Equal(align, want) {
		t.Errorf("alignment = %v, want %v", align, want)
	}
	// Reordered marks: a, U+0301 (class 230), U+0323 (class 220) becomes U+1EA1 U+0301; the
	// mark keeps the span of the character it replaced in the walk.
	text, align = nfcNormalizer{}.normalize("a\u0301\u0323", 0)
	if text != "\u1ea1\u0301" {
		t.Fatalf("NFC = %+q", text)
	}
	if want := []span{{0, 1}, {0, 1}, {0, 1}, {3, 5}, {3, 5}}; !slices.Equal(align, want) {
		t.Errorf("alignment = %v, want %v", align, want)
	}
}

func TestTruncationKeepsSpecialTokens(t *testing.T) {
	tok := loadModernBERT(t)
	text := "one two three four five six"
	full := tok.Encode(text, EncodeOptions{AddSpecialTokens: true})
	content := full.IDs[1 : len(full.IDs)-1]
	if len(content) != 6 {
		t.Fatalf("content = %v, want 6 tokens", content)
	}
	cls, sep := full.IDs[0], full.IDs[len(full.IDs)-1]
	for _, c := range []struct {
		max  int
		left bool
		want []int32
	}{
		{0, false, full.IDs},
		{8, false, full.IDs},
		{100, true, full.IDs},
		{5, false, append(append([]int32{cls}, content[:3]...), sep)},
		{5, true, append(append([]int32{cls}, content[3:]...), sep)},
		{2, false, []int32{cls, sep}},
		{1, false, []int32{cls, sep}}, // no room for content: the special tokens still stay
	} {
		enc := tok.Encode(text, EncodeOptions{AddSpecialTokens: true, MaxLength: c.max, TruncateLeft: c.left})
		if !slices.Equal(enc.IDs, c.want) || len(enc.Offsets) != len(enc.IDs) || enc.TotalTokens != 8 {
			t.Errorf("max %d left %v: ids %v (%d offsets, total %d), want %v (total 8)", c.max, c.left, enc.IDs, len(enc.Offsets), enc.TotalTokens, c.want)
		}
		if !c.left {
			ids, total := tok.AppendIDs([]int32{7}, text, c.max)
			if !slices.Equal(ids, append([]int32{7}, c.want...)) || total != 8 {
				t.Errorf("AppendIDs max %d: %v total %d, want [7] + %v total 8", c.max, ids, total, c.want)
			}
		}
	}
	// Without special tokens the whole budget goes to content.
	enc := tok.Encode(text, EncodeOptions{MaxLength: 4, TruncateLeft: true})
	if !slices.Equal(enc.IDs, content[2:]) || enc.TotalTokens != 6 {
		t.Errorf("no specials, max 4, left: %v total %d, want %v total 6", enc.IDs, enc.TotalTokens, content[2:])
	}
	if enc.Offsets[0][0] != strings.Index(text, " three") {
		t.Errorf("offsets not truncated with the ids: %v", enc.Offsets)
	}
}

func TestAddedTokenFlags(t *testing.T) {
	tok := loadModernBERT(t)
	mask, _ := tok.SpecialID("[MASK]")
	ip, _ := tok.SpecialID("|||IP_ADDRESS|||")
	for _, c := range []struct {
		text    string
		tokenAt int    // index of the added token among the content tokens
		id      int32  // its id
		span    [2]int // its span: [MASK] takes the whitespace on its left (lstrip)
	}{
		{"hello [MASK] world", 1, mask, [2]int{5, 12}},
		{"hello \t [MASK]", 1, mask, [2]int{5, 14}},
		{"[MASK]", 0, mask, [2]int{0, 6}},
		{"x|||IP_ADDRESS|||y", 1, ip, [2]int{1, 17}},
	} {
		enc := tok.Encode(c.text, EncodeOptions{})
		if c.tokenAt >= len(enc.IDs) || enc.IDs[c.tokenAt] != c.id || enc.Offsets[c.tokenAt] != c.span {
			t.Errorf("%q: ids %v offsets %v; want id %d at %d spanning %v", c.text, enc.IDs, enc.Offsets, c.id, c.tokenAt, c.span)
		}
	}
	// single_word and rstrip are not used by ModernBERT: check them on a small tokenizer.
	tj := `{"added_tokens": [
		{"id": 300, "content": "ab", "single_word": true, "lstrip": false, "rstrip": true, "normalized": false, "special": true}],
	 "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
	 "model": {"type": "BPE", "vocab": ` + byteVocabJSON(nil) + `, "merges": []}, "post_processor": null}`
	small, err := Load([]byte(tj))
	if err != nil {
		t.Fatal(err)
	}
	enc := small.Encode("ab  c xab ab", EncodeOptions{})
	// "ab" at 0 is a word of its own and takes the two spaces after it; the one inside "xab" is
	// not; the last one is.
	if enc.IDs[0] != 300 || enc.Offsets[0] != [2]int{0, 4} || enc.IDs[len(enc.IDs)-1] != 300 || slices.Index(enc.IDs[1:len(enc.IDs)-1], 300) >= 0 {
		t.Errorf("single_word/rstrip: ids %v offsets %v", enc.IDs, enc.Offsets)
	}
}

func TestMergesBothFormatsAndOrder(t *testing.T) {
	// "a b" strings and ["a", "b"] pairs give the same model; a lower rank merges first, and a
	// tie in rank goes to the leftmost pair.
	vocab := byteVocabJSON([]string{"ab", "bc", "abc", "aa"})
	for _, merges := range []string{`["b c", "a b", "ab c", "a a"]`, `[["b", "c"], ["a", "b"], ["ab", "c"], ["a", "a"]]`} {
		tj := `{"added_tokens": [], "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
		 "model": {"type": "BPE", "vocab": ` + vocab + `, "merges": ` + merges + `}, "post_processor": null}`
		tok, err := Load([]byte(tj))
		if err != nil {
			t.Fatal(err)
		}
		for text, want := range map[string][]int32{
			"abc":  {'a', 257},      // "b c" (rank 0) before "a b" (rank 1), and no "a bc" merge
			"aaa":  {259, 'a'},      // leftmost of equal pairs
			"abab": {256, 256},      // both "a b"
			"abx":  {256, 'x'},      // no merge with x
			"xabc": {'x', 'a', 257}, // same as "abc"
		} {
			enc := tok.Encode(text, EncodeOptions{})
			if !slices.Equal(enc.IDs, want) {
				t.Errorf("merges %s: %q = %v, want %v", merges, text, enc.IDs, want)
			}
		}
	}
}

// tokenDecoder returns a function that concatenates the text of tokens (for byte-level BPE
// tokens, their bytes).
func tokenDecoder(tok *Tokenizer) func([]int32) string {
	m := tok.model.(*bpe)
	text := make(map[int32]string, len(m.vocab)+len(tok.added))
	for s, id := range m.vocab {
		if b, ok := byteLevelDecode(s); ok {
			text[id] = string(b)
		}
	}
	for s, id := range tok.added {
		text[id] = s
	}
	return func(ids []int32) string {
		var sb strings.Builder
		for _, id := range ids {
			sb.WriteString(text[id])
		}
		return sb.String()
	}
}

// checkInvariants checks what must hold for any input: ids in the vocabulary, AppendIDs and
// Encode agree, offsets inside the input; for text already in NFC the spans tile the input
// (tokens that split one character share its span); and the tokens spell the NFC text.
func checkInvariants(t *testing.T, tok *Tokenizer, text string, decode func([]int32) string) {
	t.Helper()
	enc := tok.Encode(text, EncodeOptions{AddSpecialTokens: true})
	ids, total := tok.AppendIDs(nil, text, 0)
	if !slices.Equal(ids, enc.IDs) || total != len(ids) || enc.TotalTokens != len(ids) {
		t.Fatalf("%q: AppendIDs %v (total %d) != Encode %v (total %d)", text, ids, total, enc.IDs, enc.TotalTokens)
	}
	if len(enc.Offsets) != len(enc.IDs) || len(ids) < 2 {
		t.Fatalf("%q: %d ids, %d offsets", text, len(enc.IDs), len(enc.Offsets))
	}
	for _, id := range ids {
		if id < 0 || int(id) >= tok.VocabSize() {
			t.Fatalf("%q: id %d outside the vocabulary", text, id)
		}
	}
	content, offsets := ids[1:len(ids)-1], enc.Offsets[1:len(ids)-1]
	for i, off := range offsets {
		if off[0] < 0 || off[0] > off[1] || off[1] > len(text) {
			t.Fatalf("%q: token %d span %v outside the input", text, i, off)
		}
	}
	valid, _ := toValidUTF8(text)
	if !norm.NFC.IsNormalString(valid) {
		return
	}
	prevEnd := 0
	for i, off := range offsets {
		if off[0] >= off[1] || off[0] > prevEnd || off[1] < prevEnd {
			t.Fatalf("%q: token %d span %v does not continue from %d (offsets %v)", text, i, off, prevEnd, offsets)
		}
		prevEnd = off[1]
	}
	if prevEnd != len(text) {
		t.Fatalf("%q: spans end at %d of %d bytes", text, prevEnd, len(text))
	}
	if decode != nil && !strings.Contains(text, "[MASK]") { // [MASK] swallows whitespace (lstrip)
		if got := decode(content); got != valid {
			t.Fatalf("%q: tokens spell %q", text, got)
		}
	}
}

func TestHardCaseInvariants(t *testing.T) {
	tok := loadModernBERT(t)
	decode := tokenDecoder(tok)
	for _, text := range hardCases(t) {
		checkInvariants(t, tok, text, decode)
	}
	for _, text := range []string{"\xff", "a\xE2\x82", "\xED\xA0\x80 [CLS]\xC0", "|||IP_ADDRESS\xff|||"} {
		checkInvariants(t, tok, text, decode)
	}
}

func TestConcurrentEncodeMatchesSequential(t *testing.T) {
	tok := loadModernBERT(t)
	texts := append(hardCases(t), msmarcoPassages(t)[:500]...)
	want := make([][]int32, len(texts))
	for i, text := range texts {
		want[i], _ = tok.AppendIDs(nil, text, 0)
	}
	workers := max(4, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := range workers {
		wg.Go(func() {
			for k := range texts {
				i := (k*7 + w*13) % len(texts) // each worker in its own order
				enc := tok.Encode(texts[i], EncodeOptions{AddSpecialTokens: true})
				if !slices.Equal(enc.IDs, want[i]) {
					errs <- fmt.Sprintf("worker %d: %q differs", w, texts[i])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
