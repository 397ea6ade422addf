package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of tokenizer.json's "added_tokens". Its "special" flag only matters
// for decoding (and for HF's encode_special_tokens option, off by default): special or not, an
// added token found in the text is encoded as itself.
type addedToken struct {
	id         int32
	content    string
	singleWord bool // only match when not inside a word
	lstrip     bool // also take the whitespace on its left
	rstrip     bool // also take the whitespace on its right
	normalized bool // match against the normalized text (else the raw input)
}

// segment is a piece of text: an added token (id >= 0) or text for the model (id < 0).
type segment struct {
	start, end int32
	id         int32
}

// addedMatcher finds added tokens in text the way HF's AddedVocabulary does: an Aho-Corasick
// automaton with leftmost-longest, non-overlapping matches. Here a byte trie stands in for the
// automaton: trying each start position in turn and keeping the longest match there gives the
// same matches, in time bounded by the length of the longest token per position.
type addedMatcher struct {
	tokens []addedToken
	root   [256]int32 // first byte -> node (0: none)
	nodes  []trieNode // nodes[0] is unused so that 0 can mean "none"
}

type trieNode struct {
	edges []trieEdge
	token int32 // index in tokens of the pattern ending here, or -1
}

type trieEdge struct {
	b    byte
	node int32
}

// newAddedMatcher builds a matcher for tokens, each matched as pattern[i] (its content, or its
// normalized content).
func newAddedMatcher(tokens []addedToken, patterns []string) *addedMatcher {
	m := &addedMatcher{tokens: tokens, nodes: make([]trieNode, 1)}
	for ti, p := range patterns {
		if p == "" {
			continue
		}
		node := m.root[p[0]]
		if node == 0 {
			node = m.newNode()
			m.root[p[0]] = node
		}
		for i := 1; i < len(p); i++ {
			next := m.child(node, p[i])
			if next == 0 {
				next = m.newNode()
				m.nodes[node].edges = append(m.nodes[node].edges, trieEdge{p[i], next})
			}
			node = next
		}
		if m.nodes[node].token < 0 { // HF keeps the first of two identical patterns
			m.nodes[node].token = int32(ti)
		}
	}
	return m
}

func (m *addedMatcher) newNode() int32 {
	m.nodes = append(m.nodes, trieNode{token: -1})
	return int32(len(m.nodes) - 1)
}

func (m *addedMatcher) child(node int32, b byte) int32 {
	for _, e := range m.nodes[node].edges {
		if e.b == b {
			return e.node
		}
	}
	return 0
}

// longestAt returns the token index and end of the longest pattern starting at s[i], or -1.
func (m *addedMatcher) longestAt(s string, i int) (int32, int) {
	node := m.root[s[i]]
	best, bestEnd := int32(-1), 0
	for j := i + 1; ; j++ {
		if t := m.nodes[node].token; t >= 0 {
			best, bestEnd = t, j
		}
		if j == len(s) {
			break
		}
		if node = m.child(node, s[j]); node == 0 {
			break
		}
	}
	return best, bestEnd
}

// appendSegments splits s into added tokens and the text between them, appending the segments
// to dst. It follows HF's find_matches, quirks included: a match dropped by single_word is
// skipped without retrying inside it, lstrip never reaches back over an earlier segment, and
// rstrip may run past where the next match starts.
func (m *addedMatcher) appendSegments(dst []segment, s string) []segment {
	if m == nil || len(m.tokens) == 0 {
		return append(dst, segment{0, int32(len(s)), -1})
	}
	prev := 0
	for i := 0; i < len(s); {
		if m.root[s[i]] == 0 {
			i++
			continue
		}
		ti, end := m.longestAt(s, i)
		if ti < 0 {
			i++
			continue
		}
		start, stop := i, end
		i = end
		tok := &m.tokens[ti]
		if tok.singleWord {
			if (start > 0 && endsWithWordChar(s[:start])) || (stop < len(s) && startsWithWordChar(s[stop:])) {
				continue
			}
		}
		if tok.lstrip {
			start = max(trailingSpaceStart(s[:start]), prev)
		}
		if tok.rstrip {
			stop += leadingSpaceLen(s[stop:])
		}
		if prev < start {
			dst = append(dst, segment{int32(prev), int32(start), -1})
		}
		dst = append(dst, segment{int32(start), int32(stop), tok.id})
		prev = stop
	}
	if prev != len(s) || len(s) == 0 {
		dst = append(dst, segment{int32(prev), int32(len(s)), -1})
	}
	return dst
}

// isWordChar is the Unicode \w of Rust's regex crate: Alphabetic, marks, decimal numbers,
// connector punctuation and the joiners.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		unicode.IsMark(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r) ||
		r == '\u200c' || r == '\u200d'
}

func endsWithWordChar(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return len(s) > 0 && isWordChar(r)
}

func startsWithWordChar(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return len(s) > 0 && isWordChar(r)
}

// trailingSpaceStart returns where the run of whitespace ending s starts.
func trailingSpaceStart(s string) int {
	i := len(s)
	for i > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:i])
		if !unicode.IsSpace(r) {
			break
		}
		i -= size
	}
	return i
}

// leadingSpaceLen returns the length of the run of whitespace starting s.
func leadingSpaceLen(s string) int {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += size
	}
	return i
}
