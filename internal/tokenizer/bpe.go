package tokenizer

import (
	"fmt"
	"unicode/utf8"
)

// model turns one pre-tokenized word into tokens. BPE is the only one so far; WordPiece or
// Unigram would be further implementations, chosen in load.go.
type model interface {
	// appendWord appends the ids of word's tokens to ids and, when withEnds, the end of each
	// token as a byte offset into word to ends.
	appendWord(sc *scratch, word string, ids, ends []int32, withEnds bool) ([]int32, []int32)
	// tokenID returns the id of a vocabulary entry, spelled as in tokenizer.json.
	tokenID(token string) (int32, bool)
	// maxID is the largest id in the vocabulary.
	maxID() int32
}

// bpe is a byte-level BPE model. The ByteLevel pre-tokenizer maps each byte to a printable
// character (the GPT-2 alphabet) and the vocabulary is spelled in that alphabet; the mapping
// is one to one, so this model decodes the vocabulary back to raw bytes once, at load time,
// and then works on the input bytes directly.
type bpe struct {
	vocab  map[string]int32 // as spelled in tokenizer.json, for tokenID
	byteID [256]int32       // the token of each single byte
	merges map[uint64]merge // (left id, right id) -> merge
	maxTok int32

	// wholeWords holds the words (as raw bytes) that encode to exactly one token: the
	// vocabulary entries that BPE leaves whole, or the whole vocabulary with ignore_merges.
	// It is read-only after loading, so the common case needs no lock.
	wholeWords map[string]int32
	cache      *wordCache
}

// merge is one entry of the merges list: its priority and the token it produces.
type merge struct {
	rank  uint32
	newID int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// newByteLevelBPE builds the model from the vocabulary and merges of tokenizer.json.
func newByteLevelBPE(vocab map[string]int32, merges [][2]string, ignoreMerges bool) (*bpe, error) {
	m := &bpe{
		vocab:      vocab,
		merges:     make(map[uint64]merge, len(merges)),
		wholeWords: make(map[string]int32),
		cache:      newWordCache(),
	}
	raw := make(map[string]int32, len(vocab))
	m.maxTok = -1
	for tok, id := range vocab {
		m.maxTok = max(m.maxTok, id)
		b, ok := byteLevelDecode(tok)
		if !ok {
			// Not spelled in the byte-level alphabet: no input can produce it.
			continue
		}
		raw[string(b)] = id
	}
	for c := range 256 {
		id, ok := raw[string([]byte{byte(c)})]
		if !ok {
			if c == 0xC0 || c == 0xC1 || c >= 0xF5 {
				continue // never in valid UTF-8, so never in a word
			}
			return nil, fmt.Errorf("byte-level BPE vocabulary has no token for byte 0x%02x (%q)", c, string(byteToRune[c]))
		}
		m.byteID[c] = id
	}
	for rank, pair := range merges {
		left, okL := vocab[pair[0]]
		right, okR := vocab[pair[1]]
		out, okO := vocab[pair[0]+pair[1]]
		if !okL || !okR || !okO {
			return nil, fmt.Errorf("merge %d %q %q: token not in the vocabulary", rank, pair[0], pair[1])
		}
		// A repeated merge takes its last rank, as in HF (it collects the list into a map).
		m.merges[pairKey(left, right)] = merge{rank: uint32(rank), newID: out}
	}
	if ignoreMerges {
		m.wholeWords = raw
		return m, nil
	}
	var sc scratch
	for word, id := range raw {
		if !utf8.ValidString(word) {
			continue // a part of a character: never a whole word
		}
		ids, _ := m.mergeWord(&sc, word, sc.tokIDs[:0], nil, false)
		if len(ids) == 1 && ids[0] == id {
			m.wholeWords[word] = id
		}
		sc.tokIDs = ids
	}
	return m, nil
}

func (m *bpe) tokenID(token string) (int32, bool) {
	id, ok := m.vocab[token]
	return id, ok
}

func (m *bpe) maxID() int32 { return m.maxTok }

func (m *bpe) appendWord(sc *scratch, word string, ids, ends []int32, withEnds bool) ([]int32, []int32) {
	if len(word) == 0 {
		return ids, ends
	}
	if id, ok := m.wholeWords[word]; ok {
		if withEnds {
			ends = append(ends, int32(len(word)))
		}
		return append(ids, id), ends
	}
	cached, ok := m.cache.get(word)
	if !ok {
		var tokEnds []int32
		sc.tokIDs, tokEnds = m.mergeWord(sc, word, sc.tokIDs[:0], sc.tokEnds[:0], true)
		sc.tokEnds = tokEnds
		cached = m.cache.put(word, sc.tokIDs, tokEnds)
	}
	n := len(cached) / 2
	ids = append(ids, cached[:n]...)
	if withEnds {
		ends = append(ends, cached[n:]...)
	}
	return ids, ends
}

// symbol is one part of a word during merging, in a doubly linked list over sc.symbols.
type symbol struct {
	id         int32
	prev, next int32 // -1: none
	end        int32 // byte offset in the word where this symbol ends
	gone       bool  // merged into its left neighbour
}

// pendingMerge is a candidate merge of the symbol at pos with its right neighbour.
type pendingMerge struct {
	rank  uint32
	pos   int32
	newID int32
}

func (a pendingMerge) less(b pendingMerge) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

// mergeWord runs BPE on word as HF's Word::merge_all does: start from single bytes and apply
// the lowest-ranked merge available, leftmost first, until none applies. A min-heap of
// candidate merges makes this O(n log n); a candidate whose symbols changed since it was
// queued is dropped when it comes up. It appends the token ids and (when withEnds) their end
// offsets.
func (m *bpe) mergeWord(sc *scratch, word string, ids, ends []int32, withEnds bool) ([]int32, []int32) {
	syms := sc.symbols[:0]
	for i := 0; i < len(word); i++ {
		syms = append(syms, symbol{id: m.byteID[word[i]], prev: int32(i - 1), next: int32(i + 1), end: int32(i + 1)})
	}
	syms[len(syms)-1].next = -1
	h := sc.heap[:0]
	for i := 0; i+1 < len(syms); i++ {
		if mg, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h = heapPush(h, pendingMerge{mg.rank, int32(i), mg.newID})
		}
	}
	for len(h) > 0 {
		var top pendingMerge
		top, h = heapPop(h)
		cur := &syms[top.pos]
		if cur.gone || cur.next < 0 {
			continue
		}
		right := &syms[cur.next]
		if mg, ok := m.merges[pairKey(cur.id, right.id)]; !ok || mg.newID != top.newID {
			continue // stale: one of the two symbols has changed
		}
		cur.id, cur.end, cur.next = top.newID, right.end, right.next
		right.gone = true
		if cur.next >= 0 {
			syms[cur.next].prev = top.pos
		}
		if cur.prev >= 0 {
			if mg, ok := m.merges[pairKey(syms[cur.prev].id, cur.id)]; ok {
				h = heapPush(h, pendingMerge{mg.rank, cur.prev, mg.newID})
			}
		}
		if cur.next >= 0 {
			if mg, ok := m.merges[pairKey(cur.id, syms[cur.next].id)]; ok {
				h = heapPush(h, pendingMerge{mg.rank, top.pos, mg.newID})
			}
		}
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		ids = append(ids, syms[i].id)
		if withEnds {
			ends = append(ends, syms[i].end)
		}
	}
	sc.symbols, sc.heap = syms, h
	return ids, ends
}

func heapPush(h []pendingMerge, x pendingMerge) []pendingMerge {
	h = append(h, x)
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h[i].less(h[parent]) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
	return h
}

func heapPop(h []pendingMerge) (pendingMerge, []pendingMerge) {
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, r, smallest := 2*i+1, 2*i+2, i
		if l < len(h) && h[l].less(h[smallest]) {
			smallest = l
		}
		if r < len(h) && h[r].less(h[smallest]) {
			smallest = r
		}
		if smallest == i {
			break
		}
		h[i], h[smallest] = h[smallest], h[i]
		i = smallest
	}
	return top, h
}

// byteToRune is the GPT-2 byte-to-character map: printable Latin-1 bytes stand for
// themselves, the others are shifted to U+0100 and up, in byte order.
var byteToRune = func() (t [256]rune) {
	n := rune(0)
	for b := range 256 {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			t[b] = rune(b)
		} else {
			t[b] = 256 + n
			n++
		}
	}
	return t
}()

var runeToByte = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b, r := range byteToRune {
		m[r] = byte(b)
	}
	return m
}()

// byteLevelDecode maps a token spelled in the byte-level alphabet back to its bytes.
func byteLevelDecode(tok string) ([]byte, bool) {
	out := make([]byte, 0, len(tok))
	for _, r := range tok {
		b, ok := runeToByte[r]
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, len(out) > 0
}
