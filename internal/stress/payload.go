package stress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// API flavours: the request body each sends and the response it expects.
const (
	APIEmbed  = "embed"  // POST /embed {"texts": [...]} -> {"embeddings": [[...]], ...} (the seed's)
	APIOpenAI = "openai" // POST /v1/embeddings {"model", "input": [...]} -> {"data": [{"embedding"}], "usage"}
	APITEI    = "tei"    // POST /embed {"inputs": [...]} -> [[...]] (HF text-embeddings-inference)
)

// Response headers through which embedbench's own server reports token counts and its time
// split; other servers simply do not send them.
const (
	HeaderTokens      = "X-Embedbench-Tokens"
	HeaderQueueMs     = "X-Embedbench-Queue-Ms"
	HeaderTokenizeMs  = "X-Embedbench-Tokenize-Ms"
	HeaderInferenceMs = "X-Embedbench-Inference-Ms"
	HeaderTotalMs     = "X-Embedbench-Total-Ms"
)

// payload builds request bodies and checks responses for one API flavour.
type payload struct {
	api      string
	endpoint string
	url      *url.URL
	header   http.Header // shared and read-only: the client never writes a request's header
	// encoded holds each passage already JSON-encoded, so a body is built by copying bytes.
	encoded        [][]byte
	prefix, suffix []byte
	batch          int
}

func newPayload(api, serviceURL, model string, passages []string, batch int) (*payload, error) {
	if len(passages) == 0 {
		return nil, fmt.Errorf("no passages to send")
	}
	if batch < 1 {
		return nil, fmt.Errorf("batch size %d: must be at least 1", batch)
	}
	base := strings.TrimRight(serviceURL, "/")
	p := &payload{api: api, batch: batch, suffix: []byte("]}")}
	switch api {
	case APIEmbed:
		p.endpoint = base + "/embed"
		p.prefix = []byte(`{"texts":[`)
	case APITEI:
		p.endpoint = base + "/embed"
		p.prefix = []byte(`{"inputs":[`)
	case APIOpenAI:
		p.endpoint = base + "/v1/embeddings"
		prefix := []byte(`{`)
		if model != "" {
			m, _ := json.Marshal(model)
			prefix = append(append(append(prefix, `"model":`...), m...), ',')
		}
		p.prefix = append(prefix, `"encoding_format":"float","input":[`...)
	default:
		return nil, fmt.Errorf("unknown API %q: want embed, openai or tei", api)
	}
	u, err := url.Parse(p.endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("service URL %q: want http(s)://host[:port]", serviceURL)
	}
	p.url = u
	p.header = http.Header{"Content-Type": {"application/json"}}
	p.encoded = make([][]byte, len(passages))
	for i, s := range passages {
		p.encoded[i] = gjson.AppendJSONString(nil, s)
	}
	return p, nil
}

// body returns the body of the n-th request: the next batch of passages, cycling through the
// data, so request n holds passages n*batch ... n*batch+batch-1 (mod the data's length).
func (p *payload) body(n int64) []byte {
	count := int64(len(p.encoded))
	start := (n * int64(p.batch)) % count
	size := len(p.prefix) + len(p.suffix) + p.batch - 1
	for i := range int64(p.batch) {
		size += len(p.encoded[(start+i)%count])
	}
	b := make([]byte, 0, size)
	b = append(b, p.prefix...)
	for i := range int64(p.batch) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.encoded[(start+i)%count]...)
	}
	return append(b, p.suffix...)
}

// request wraps body in a POST to the endpoint. Built by hand rather than with
// http.NewRequest, which would parse the URL again for every request.
func (p *payload) request(ctx context.Context, body []byte) *http.Request {
	req := &http.Request{
		Method:        http.MethodPost,
		URL:           p.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        p.header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		ContentLength: int64(len(body)),
		Host:          p.url.Host,
	}
	return req.WithContext(ctx)
}

// countNumbers is how many elements the JSON array raw holds if all are numbers, else 0. raw
// is valid JSON (check validated the body), so an array holding only the bytes of numbers,
// commas and white space holds only numbers, one more than its commas. A branch-free byte
// scan (3 GB/s here): gjson's iterator parses every float, which at thousands of 768-float
// responses a second would be the load generator's CPU.
func countNumbers(raw string) int {
	if len(raw) < 2 {
		return 0
	}
	inner := raw[1 : len(raw)-1]
	ok := byte(1)
	for i := 0; i < len(inner); i++ {
		ok &= numericByte[inner[i]]
	}
	if ok == 0 || strings.TrimSpace(inner) == "" {
		return 0 // a string, null, boolean, list or object; or no element at all
	}
	return strings.Count(inner, ",") + 1
}

// numericByte is 1 for the bytes an array of JSON numbers may hold between its brackets.
var numericByte = func() (t [256]byte) {
	for _, b := range []byte("0123456789-+.eE, \t\r\n") {
		t[b] = 1
	}
	return t
}()

// checked is what a successful response told us.
type checked struct {
	dim    int
	tokens int64 // -1 when the response carried no token count
	usage  bool  // tokens came from usage.prompt_tokens (else from the header)
	model  string
}

// check validates a 200 response: valid JSON of the flavour's shape with exactly p.batch
// embeddings, each a list of numbers of one non-zero dimension (or each a base64 string). It
// returns a description of what is wrong, or "". A server whose vectors overflow to NaN and
// are written as NaN or null fails here, not in the numbers it reports.
func (p *payload) check(body []byte, header http.Header) (checked, string) {
	c := checked{tokens: -1}
	if !gjson.ValidBytes(body) {
		return c, "response is not valid JSON"
	}
	var rows gjson.Result
	switch p.api {
	case APIEmbed:
		doc := gjson.ParseBytes(body)
		rows = doc.Get("embeddings")
		c.model = doc.Get("model").String()
	case APITEI:
		rows = gjson.ParseBytes(body)
	case APIOpenAI:
		doc := gjson.ParseBytes(body)
		rows = doc.Get("data")
		c.model = doc.Get("model").String()
		if t := doc.Get("usage.prompt_tokens"); t.Exists() {
			c.tokens, c.usage = t.Int(), true
		}
	}
	if !rows.IsArray() {
		return c, "response has no embeddings array"
	}
	n := 0
	bad := ""
	rows.ForEach(func(_, row gjson.Result) bool {
		if p.api == APIOpenAI {
			row = row.Get("embedding")
		}
		dim := 0
		switch {
		case row.IsArray():
			dim = countNumbers(row.Raw)
		case row.Type == gjson.String && row.Str != "":
			dim = -1 // base64-encoded vector
		}
		switch {
		case dim == 0:
			bad = fmt.Sprintf("embedding %d is empty or not a vector of numbers", n)
			return false
		case n == 0:
			c.dim = dim
		case dim != c.dim:
			bad = fmt.Sprintf("embedding %d has dimension %d, embedding 0 has %d", n, dim, c.dim)
			return false
		}
		n++
		return true
	})
	if bad != "" {
		return c, bad
	}
	if n != p.batch {
		return c, fmt.Sprintf("got %d embeddings for %d passages", n, p.batch)
	}
	if c.tokens < 0 {
		if v := header.Get(HeaderTokens); v != "" {
			if t, err := strconv.ParseInt(v, 10, 64); err == nil && t >= 0 {
				c.tokens = t
			}
		}
	}
	return c, ""
}
