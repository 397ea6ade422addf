package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The decoders fuzzed through the whole handler, with the real tokenizer and the tiny model
// behind it: whatever the body, the answer is a 200 with a JSON body or a JSON 4xx, never a
// 5xx (a recovered panic is a 500) and never a crash.

var fuzzSeeds = map[string][]string{
	"/embed": {
		`{"texts": ["hello world"]}`, `{"texts": ["a", "b"], "normalize": false, "truncate": false}`,
		`{"texts": []}`, `{"texts": [null]}`, `{"texts": "a"}`, `{"texts": ["a", 3]}`, `[]`, `null`, ``, `{`,
		`{"texts": ["\u0000\ud800"]}`, `{"texts": ["` + passage(1, 300) + `"], "truncate": false}`,
		`{"texts": ["a"], "texts": ["b"]}`, `{"texts": ["a"], "normalize": 1}`,
	},
	"/v1/embeddings": {
		`{"input": "hello"}`, `{"input": ["a", "b"], "encoding_format": "base64", "dimensions": 8}`,
		`{"input": [[1, 2, 3]]}`, `{"input": [1, 2, 3]}`, `{"input": [[-1]]}`, `{"input": [[999999]]}`,
		`{"input": [[]]}`, `{"input": 3}`, `{"input": "a", "dimensions": -1}`, `{"input": "a", "dimensions": 1e400}`,
		`{"input": [1.5]}`, `{"input": "a", "encoding_format": null}`, `{"model": "x"}`,
	},
	"/tokenize": {
		`{"texts": ["hello"]}`, `{"texts": ["a"], "add_special_tokens": false, "return_offsets": true, "max_length": 3}`,
		`{"texts": ["a"], "max_length": -5}`, `{"texts": ["a"], "max_length": 1e30}`, `{"texts": [""]}`,
		`{"inputs": ["a"]}`, `{"texts": [true]}`,
	},
}

func fuzzHandler(f *testing.F, path string) {
	for _, s := range fuzzSeeds[path] {
		f.Add([]byte(s))
	}
	fix := start(f, options{maxClientBatch: 16, maxBody: 64 << 10})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		fix.srv.Handler().ServeHTTP(rec, req)
		out := rec.Body.Bytes()
		switch {
		case rec.Code == http.StatusOK:
			if !json.Valid(out) {
				t.Fatalf("%s %q: 200 with a body that is not JSON: %.200s", path, body, out)
			}
		case rec.Code >= 400 && rec.Code < 500:
			var e struct {
				Error struct{ Message string } `json:"error"`
			}
			if err := json.Unmarshal(out, &e); err != nil || e.Error.Message == "" {
				t.Fatalf("%s %q: %d without a JSON error: %.200s", path, body, rec.Code, out)
			}
		default:
			t.Fatalf("%s %q: status %d: %.300s", path, body, rec.Code, out)
		}
	})
}

func FuzzEmbed(f *testing.F)    { fuzzHandler(f, "/embed") }
func FuzzOpenAI(f *testing.F)   { fuzzHandler(f, "/v1/embeddings") }
func FuzzTokenize(f *testing.F) { fuzzHandler(f, "/tokenize") }
