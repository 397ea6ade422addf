package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/embedbench/embedbench/internal/api"
	"github.com/embedbench/embedbench/internal/engine"
)

// statusClientGone is nginx's code for a client that closed the connection before the answer:
// it is only logged and counted, never sent.
const statusClientGone = 499

// maxPooledBuffer keeps one huge request from pinning its buffer in the pool for ever.
const maxPooledBuffer = 4 << 20

// exchange is one request in progress: the writer, what was answered, and log fields.
type exchange struct {
	http.ResponseWriter
	r      *http.Request
	start  time.Time
	status int
	inputs int
	tokens int
	// failure is the message of a 5xx answer, for the request's log line.
	failure string
	// writeErr is the first error writing the answer (a client that stopped reading past
	// --write-timeout, or left): the answer was not delivered.
	writeErr error
	// admitted is true while the exchange holds an admission slot.
	admitted bool
	// writeTimeout bounds the writing of the answer, counted from its first byte, so that a
	// client that never reads cannot hold a goroutine and its buffers for ever. It is set at
	// the answer, not for the whole request, so slow model work is never cut by it.
	writeTimeout time.Duration
}

func (x *exchange) WriteHeader(code int) {
	if x.status == 0 {
		x.status = code
		x.startWriting()
	}
	x.ResponseWriter.WriteHeader(code)
}

// doneWriting flushes the answer within the write deadline, then lifts the deadline: net/http
// does not reset it between requests on a kept-alive connection.
func (x *exchange) doneWriting() {
	if x.writeTimeout > 0 && x.status != 0 {
		rc := http.NewResponseController(x.ResponseWriter)
		_ = rc.Flush()
		_ = rc.SetWriteDeadline(time.Time{})
	}
}

func (x *exchange) startWriting() {
	if x.writeTimeout > 0 {
		_ = http.NewResponseController(x.ResponseWriter).SetWriteDeadline(time.Now().Add(x.writeTimeout))
	}
}

// Unwrap lets http.ResponseController reach the connection's deadlines.
func (x *exchange) Unwrap() http.ResponseWriter { return x.ResponseWriter }

func (x *exchange) Write(p []byte) (int, error) {
	if x.status == 0 {
		x.status = http.StatusOK
		x.startWriting()
	}
	n, err := x.ResponseWriter.Write(p)
	if err != nil && x.writeErr == nil {
		x.writeErr = err
	}
	return n, err
}

// endpoint options.
type route struct {
	name    string
	methods []string
	work    bool // authenticated, needs the model, body read, then admitted under the concurrency limit
	serve   func(x *exchange, b *Backend, body []byte)
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	s.addProbeRoutes(mux)
	add := func(path string, rt route) { mux.Handle(path, s.wrap(rt)) }
	add("/embed", route{name: "embed", methods: []string{http.MethodPost}, work: true, serve: s.handleEmbed})
	add("/v1/embeddings", route{name: "openai_embeddings", methods: []string{http.MethodPost}, work: true, serve: s.handleOpenAI})
	add("/v1/models", route{name: "openai_models", methods: []string{http.MethodGet, http.MethodHead}, serve: s.handleModels})
	add("/tokenize", route{name: "tokenize", methods: []string{http.MethodPost}, work: true, serve: s.handleTokenize})
	add("/", route{name: "unknown", serve: func(x *exchange, _ *Backend, _ []byte) {
		s.writeError(x, api.Errorf(http.StatusNotFound, "", "no route %s %s; try POST /embed, POST /v1/embeddings, POST /tokenize, GET /health, GET /metrics or GET /v1/models", x.r.Method, x.r.URL.Path))
	}})
	return mux
}

// probeRoutes are /health and /metrics alone, for ServeProbes.
func (s *Server) probeRoutes() http.Handler {
	mux := http.NewServeMux()
	s.addProbeRoutes(mux)
	mux.Handle("/", s.wrap(route{name: "unknown", serve: func(x *exchange, _ *Backend, _ []byte) {
		s.writeError(x, api.Errorf(http.StatusNotFound, "", "no route %s %s: this port answers GET /health and GET /metrics only", x.r.Method, x.r.URL.Path))
	}}))
	return mux
}

// addProbeRoutes adds /health and /metrics.
func (s *Server) addProbeRoutes(mux *http.ServeMux) {
	metricsHandler := promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})
	add := func(path string, rt route) { mux.Handle(path, s.wrap(rt)) }
	add("/health", route{name: "health", methods: []string{http.MethodGet, http.MethodHead}, serve: s.handleHealth})
	add("/metrics", route{name: "metrics", methods: []string{http.MethodGet, http.MethodHead}, serve: func(x *exchange, _ *Backend, _ []byte) {
		metricsHandler.ServeHTTP(x, x.r)
	}})
}

// wrap applies, in order: method check, auth, readiness and the body read; work handlers then
// decode and admit (see decodeAndAdmit). Logs and counts every request. Admission comes last so
// that it counts only work ready to run: a slow upload holds a connection, which the connection
// limits bound, and a malformed body is refused whatever the load.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := &exchange{ResponseWriter: w, r: r, start: time.Now(), writeTimeout: s.cfg.WriteTimeout}
		defer s.finish(x, rt.name)
		defer x.doneWriting()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panic", "route", rt.name, "panic", p)
				if x.status == 0 {
					s.writeError(x, api.Errorf(http.StatusInternalServerError, "", "internal error: %v", p))
				}
			}
		}()
		if r.ContentLength != 0 {
			// The body's deadline, counted from the request's arrival so that trickling bytes
			// do not extend it: readBody reads under it, and a body this server answers
			// without reading (405, 401, 503, or one sent to a GET route) is still drained by
			// net/http before and after the answer, up to 256 KiB, which without it a client
			// that announces a body and never sends it would hold for good. ErrNotSupported (a
			// ResponseWriter without a connection, as in tests) leaves it unbounded.
			_ = http.NewResponseController(w).SetReadDeadline(x.start.Add(s.cfg.BodyReadTimeout))
		}
		if s.agedOut(r) {
			w.Header().Set("Connection", "close") // answer, then make the client reconnect
		}
		if rt.methods != nil && !allowed(rt.methods, r.Method) {
			w.Header().Set("Allow", strings.Join(rt.methods, ", "))
			s.writeError(x, api.Errorf(http.StatusMethodNotAllowed, "", "method %s not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(rt.methods, " or ")))
			return
		}
		if !rt.work {
			rt.serve(x, s.backend.Load(), nil)
			return
		}
		if s.cfg.APIKey != "" && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="embedbench"`)
			s.writeError(x, api.Errorf(http.StatusUnauthorized, "", "missing or wrong API key: send \"Authorization: Bearer <key>\""))
			return
		}
		b := s.backend.Load()
		if b == nil {
			w.Header().Set("Retry-After", "5")
			s.writeError(x, api.Errorf(http.StatusServiceUnavailable, "", "the model is loading; retry shortly"))
			return
		}
		if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
			x.Header().Set("Accept-Encoding", "identity")
			s.writeError(x, api.Errorf(http.StatusUnsupportedMediaType, "", "Content-Encoding %q is not supported: send the body uncompressed", enc))
			return
		}
		body, ok := s.readBody(x)
		if !ok {
			return
		}
		defer s.putBuffer(body)
		rt.serve(x, b, body.Bytes())
	})
}

// admit takes an admission slot, or answers 429 at once and reports false. The caller gives
// the slot back with s.release; writing the answer gives it back too, since a slot bounds the
// work on the model, not a client's speed at reading.
func (s *Server) admit(x *exchange) bool {
	select {
	case s.admitted <- struct{}{}:
		s.metrics.inFlight.Inc()
		x.admitted = true
		return true
	default:
		x.Header().Set("Retry-After", "1")
		s.writeError(x, api.Errorf(http.StatusTooManyRequests, "", "server busy: %d requests in flight, the limit (--max-concurrent-requests); retry shortly", s.cfg.MaxConcurrentRequests))
		return false
	}
}

// release gives back x's admission slot, if it still holds one.
func (s *Server) release(x *exchange) {
	if !x.admitted {
		return
	}
	x.admitted = false
	s.metrics.inFlight.Dec()
	<-s.admitted
}

func (s *Server) finish(x *exchange, route string) {
	status := x.status
	if status == 0 {
		status = http.StatusOK
	}
	if x.writeErr != nil {
		// The answer was not delivered: counted as the client's going, as nginx counts it, and
		// said at Warn, since a client that stops reading holds a connection until the timeout.
		s.log.Warn("answer not delivered", "path", x.r.URL.Path, "status", status, "remote", x.r.RemoteAddr, "err", x.writeErr)
		status = statusClientGone
	}
	elapsed := time.Since(x.start)
	s.metrics.observeRequest(route, status, elapsed)
	if route == "metrics" || route == "health" {
		return // scraped and polled constantly: counted, not logged
	}
	// One line a request is an access log: at thousands of requests a second it cost more CPU
	// than the request's JSON and serialised every answer on the log's lock, so it is Debug
	// (--log-level debug); server errors stay visible at Error. /metrics counts every request.
	level := slog.LevelDebug
	switch {
	case status == http.StatusServiceUnavailable:
		// Loading or shutting down: expected, counted in /metrics, and a flood at any louder
		// level while a GPU warms up for a minute.
	case status >= 500 && status != statusClientGone:
		level = slog.LevelError
	}
	if !s.log.Enabled(x.r.Context(), level) {
		return
	}
	attrs := []slog.Attr{slog.String("method", x.r.Method), slog.String("path", x.r.URL.Path), slog.Int("status", status),
		slog.Float64("ms", float64(elapsed.Microseconds())/1000), slog.Int("inputs", x.inputs), slog.Int("tokens", x.tokens),
		slog.String("remote", x.r.RemoteAddr)}
	if x.failure != "" {
		attrs = append(attrs, slog.String("err", x.failure))
	}
	s.log.LogAttrs(x.r.Context(), level, "request", attrs...)
}

func allowed(methods []string, m string) bool {
	for _, a := range methods {
		if a == m {
			return true
		}
	}
	return false
}

func (s *Server) authorized(r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(s.cfg.APIKey)) == 1
}

func (s *Server) limits(b *Backend) api.Limits {
	return api.Limits{MaxInputs: s.cfg.MaxClientBatchSize, VocabSize: b.VocabSize, Dim: b.Dim, MaxSequenceLength: b.MaxSequenceLength}
}

func (s *Server) getBuffer() *bytes.Buffer {
	if b, ok := s.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

func (s *Server) putBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuffer {
		s.bufs.Put(b)
	}
}

// preallocatedBody is the most a body's buffer is given before its bytes arrive.
const preallocatedBody = 64 << 10

// maxDrainBytes bounds how much of an oversize body is read and dropped after its 413, so that
// a client which sends its whole body before reading the answer still gets to read it.
const maxDrainBytes = 64 << 20

// readBody reads the whole body into a pooled buffer, within the size limit and the read
// deadline; the caller puts the buffer back. When it reports false it has answered: 413 for
// an oversize body, 408 for one too slow to arrive, 400 for one that breaks off.
func (s *Server) readBody(x *exchange) (*bytes.Buffer, bool) {
	limit := s.cfg.MaxBodyBytes
	if x.r.ContentLength > limit {
		s.refuseOversize(x, api.Errorf(http.StatusRequestEntityTooLarge, "", "request body of %d bytes exceeds the limit of %d (--max-body-bytes)", x.r.ContentLength, limit))
		return nil, false
	}
	s.metrics.bodiesReading.Inc()
	defer s.metrics.bodiesReading.Dec()
	rc := http.NewResponseController(x) // the read deadline is wrap's, from the request's arrival
	buf := s.getBuffer()
	// Room for what the header announces, up to preallocatedBody: past that the buffer grows
	// as bytes arrive, so that a header alone cannot make the server allocate the body limit.
	if x.r.ContentLength > 0 {
		buf.Grow(int(min(x.r.ContentLength, preallocatedBody)))
	}
	n, err := buf.ReadFrom(io.LimitReader(x.r.Body, limit+1))
	switch {
	case err == nil && n <= limit:
		// Lift the deadline before the work runs: net/http reads the idle connection in the
		// background to notice a client that leaves, and a deadline passing there would
		// cancel the request as if its client had gone. On failures it stays, so that
		// net/http's discarding of an unread rest cannot hang on a stalled client.
		_ = rc.SetReadDeadline(time.Time{})
		return buf, true
	case err == nil:
		s.refuseOversize(x, api.Errorf(http.StatusRequestEntityTooLarge, "", "request body exceeds the limit of %d bytes (--max-body-bytes)", limit))
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.metrics.bodyTimeouts.Inc()
		x.Header().Set("Connection", "close")
		s.writeError(x, api.Errorf(http.StatusRequestTimeout, "", "request body not received within %s (--body-read-timeout): %d bytes arrived", s.cfg.BodyReadTimeout, n))
	case errors.Is(err, io.ErrUnexpectedEOF) || x.r.Context().Err() != nil:
		x.status = statusClientGone // it closed the connection mid-body: nobody to answer
	default:
		x.Header().Set("Connection", "close")
		s.writeError(x, api.Errorf(http.StatusBadRequest, "", "reading the request body: %v", err))
	}
	s.putBuffer(buf)
	return nil, false
}

// refuseOversize answers 413 and then reads and drops what the client still sends, within
// maxDrainBytes and the body deadline. Closing at once, as net/http does with a large unread
// body, resets the connection while the client is still sending, and most clients then
// report the reset instead of the answer.
func (s *Server) refuseOversize(x *exchange, e *api.Error) {
	rc := http.NewResponseController(x)
	_ = rc.EnableFullDuplex() // keep the body readable after the answer is written
	x.Header().Set("Connection", "close")
	s.writeError(x, e)
	if err := rc.Flush(); err != nil {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout))
	_, _ = io.CopyN(io.Discard, x.r.Body, maxDrainBytes)
}

// decodeAndAdmit decodes a request body and admits the request; when it reports false it has
// answered (a 4xx for the body, 429 when full). The caller calls s.release once done.
func decodeAndAdmit[T any](s *Server, x *exchange, b *Backend, body []byte, decodeFn func([]byte, api.Limits) (T, *api.Error)) (T, bool) {
	req, apiErr := decodeFn(body, s.limits(b))
	if apiErr != nil {
		s.writeError(x, apiErr)
		return req, false
	}
	return req, s.admit(x)
}

func (s *Server) handleEmbed(x *exchange, b *Backend, body []byte) {
	req, ok := decodeAndAdmit(s, x, b, body, api.DecodeEmbedRequest)
	if !ok {
		return
	}
	defer s.release(x)
	x.inputs = len(req.Texts)
	res, ok := s.embed(x, b, engine.Job{Texts: req.Texts, Truncate: req.Truncate, PromptName: req.PromptName})
	if !ok {
		return
	}
	if !s.postprocess(x, res.Vectors, req.Normalize, 0) {
		return
	}
	out := s.getBuffer()
	defer s.putBuffer(out)
	out.Grow(api.ResponseSizeHint(res.Vectors, api.EncodingFloat))
	out.Write(api.AppendEmbedResponse(out.AvailableBuffer(), res.Vectors, s.cfg.ModelID, b.Dim))
	s.writeJSON(x, res, out.Bytes())
}

func (s *Server) handleOpenAI(x *exchange, b *Backend, body []byte) {
	req, ok := decodeAndAdmit(s, x, b, body, api.DecodeOpenAIEmbeddingRequest)
	if !ok {
		return
	}
	defer s.release(x)
	x.inputs = req.NumInputs()
	res, ok := s.embed(x, b, engine.Job{Texts: req.Texts, IDs: req.TokenIDs, Truncate: req.Truncate, PromptName: req.PromptName})
	if !ok {
		return
	}
	if !s.postprocess(x, res.Vectors, true, req.Dimensions) {
		return
	}
	tokens := res.TotalTokens()
	out := s.getBuffer()
	defer s.putBuffer(out)
	out.Grow(api.ResponseSizeHint(res.Vectors, req.EncodingFormat))
	out.Write(api.AppendOpenAIEmbeddingResponse(out.AvailableBuffer(), res.Vectors, s.cfg.ModelID, req.EncodingFormat, api.Usage{PromptTokens: tokens, TotalTokens: tokens}))
	s.writeJSON(x, res, out.Bytes())
}

// embed runs a job and answers its failures; ok is false when the answer has been given.
func (s *Server) embed(x *exchange, b *Backend, job engine.Job) (engine.Result, bool) {
	res, err := b.Engine.Embed(x.r.Context(), job)
	if err == nil {
		x.tokens = res.TotalTokens()
		return res, true
	}
	var tooLong *engine.TooLongError
	var invalid *engine.InvalidInputError
	var unknownPrompt *engine.UnknownPromptError
	var device *engine.DeviceError
	switch {
	case errors.As(err, &tooLong):
		s.writeError(x, api.Errorf(http.StatusUnprocessableEntity, "texts", "%v", tooLong))
	case errors.As(err, &unknownPrompt):
		s.writeError(x, api.Errorf(http.StatusUnprocessableEntity, "prompt_name", "%v", unknownPrompt))
	case errors.As(err, &invalid):
		s.writeError(x, api.Errorf(http.StatusUnprocessableEntity, "input", "%v", invalid))
	case errors.Is(err, engine.ErrOverloaded):
		x.Header().Set("Retry-After", "1")
		s.writeError(x, api.Errorf(http.StatusTooManyRequests, "", "server busy: %v; retry shortly", err))
	case errors.Is(err, engine.ErrClosed):
		s.writeError(x, api.Errorf(http.StatusServiceUnavailable, "", "%v", err))
	case errors.As(err, &device):
		s.writeError(x, api.Errorf(http.StatusInternalServerError, "", "device error, the batch holding this request failed: %v", device))
	case errors.Is(err, context.Canceled) && x.r.Context().Err() != nil:
		x.status = statusClientGone // nobody is listening; the engine dropped what was still queued
	case errors.Is(err, context.DeadlineExceeded):
		s.writeError(x, api.Errorf(http.StatusGatewayTimeout, "", "request deadline exceeded: %v", err))
	default:
		s.writeError(x, api.Errorf(http.StatusInternalServerError, "", "embedding failed: %v", err))
	}
	return res, false
}

// postprocess applies the Matryoshka cut and normalisation in place, refusing non-finite
// output, which JSON cannot carry and which would mean a broken device or model.
func (s *Server) postprocess(x *exchange, vectors [][]float32, normalize bool, dims int) bool {
	for i, v := range vectors {
		if dims > 0 && dims < len(v) {
			v = v[:dims:dims]
			vectors[i] = v
		}
		ok := api.CheckFinite(v)
		if normalize {
			ok = api.Normalize(v)
		}
		if !ok {
			s.writeError(x, api.Errorf(http.StatusInternalServerError, "", "the model produced a non-finite value for input %d", i))
			return false
		}
	}
	return true
}

func (s *Server) handleTokenize(x *exchange, b *Backend, body []byte) {
	req, ok := decodeAndAdmit(s, x, b, body, api.DecodeTokenizeRequest)
	if !ok {
		return
	}
	defer s.release(x)
	x.inputs = len(req.Texts)
	resp := api.TokenizeResponse{
		Tokens: make([][]int32, len(req.Texts)), NumTokens: make([]int, len(req.Texts)),
		TotalTokens: make([]int, len(req.Texts)), Model: s.cfg.ModelID,
	}
	if req.ReturnOffsets {
		resp.Offsets = make([][][2]int, len(req.Texts))
	}
	for i, text := range req.Texts {
		ids, spans, total := b.Tokenize(text, req.AddSpecialTokens, req.ReturnOffsets, req.MaxLength)
		resp.Tokens[i], resp.NumTokens[i], resp.TotalTokens[i] = ids, len(ids), total
		if req.ReturnOffsets {
			resp.Offsets[i] = spans
		}
		x.tokens += len(ids)
	}
	data, err := json.Marshal(resp)
	if err != nil {
		s.writeError(x, api.Errorf(http.StatusInternalServerError, "", "encoding the response: %v", err))
		return
	}
	x.Header().Set("Content-Type", "application/json")
	x.Header().Set("X-Embedbench-Tokens", strconv.Itoa(x.tokens))
	x.Write(data)
}

// handleModels lists the one served model, as OpenAI-compatible servers (vLLM) do; load
// testers read the model's name from it. Once the model is loaded, extension fields say how
// it embeds (as /health does).
func (s *Server) handleModels(x *exchange, b *Backend, _ []byte) {
	type model struct {
		ID                string            `json:"id"`
		Object            string            `json:"object"`
		Created           int64             `json:"created"`
		OwnedBy           string            `json:"owned_by"`
		EmbeddingDim      int               `json:"embedding_dim,omitempty"`
		MaxSequenceLength int               `json:"max_sequence_length,omitempty"`
		Pooling           string            `json:"pooling,omitempty"`
		Normalize         *bool             `json:"normalize,omitempty"`
		Prompts           map[string]string `json:"prompts,omitempty"`
		DefaultPromptName string            `json:"default_prompt_name,omitempty"`
	}
	m := model{ID: s.cfg.ModelID, Object: "model", Created: s.started.Unix(), OwnedBy: "embedbench"}
	if b != nil {
		normalize := b.Info.Normalize
		m.EmbeddingDim, m.MaxSequenceLength, m.Pooling, m.Normalize = b.Dim, b.MaxSequenceLength, b.Info.Pooling, &normalize
		m.Prompts, m.DefaultPromptName = b.Info.Prompts, b.Info.DefaultPrompt
	}
	data, err := json.Marshal(struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{"list", []model{m}})
	if err != nil {
		s.writeError(x, api.Errorf(http.StatusInternalServerError, "", "encoding the response: %v", err))
		return
	}
	x.Header().Set("Content-Type", "application/json")
	x.Write(data)
}

func (s *Server) handleHealth(x *exchange, b *Backend, _ []byte) {
	resp := api.HealthResponse{
		Status: "loading", Backend: s.cfg.EngineName, Engine: s.cfg.EngineName, Model: s.cfg.ModelID,
		InFlightRequests: len(s.admitted), UptimeSeconds: time.Since(s.started).Seconds(),
	}
	code := http.StatusServiceUnavailable
	if b != nil {
		st := b.Engine.Stats()
		resp.Status, code = "healthy", http.StatusOK
		if st.DeviceErrors > 0 {
			resp.LastError, resp.LastErrorAt = st.LastError, st.LastErrorAt.UTC().Format(time.RFC3339Nano)
			if time.Since(st.LastErrorAt) < degradedFor {
				resp.Status = "degraded" // still serving: later batches may well succeed
			}
		}
		resp.GPUAvailable, resp.Device, resp.DType, resp.Pooling, resp.Weights = b.Info.GPUAvailable, b.Info.Device, b.Info.DType, b.Info.Pooling, b.Info.Weights
		includePrompt, normalize := b.Info.IncludePrompt, b.Info.Normalize
		resp.PoolingSource, resp.IncludePrompt, resp.Dense, resp.Normalize = b.Info.PoolingSource, &includePrompt, b.Info.Dense, &normalize
		resp.Prompts, resp.DefaultPromptName, resp.SentenceTransformers = b.Info.Prompts, b.Info.DefaultPrompt, b.Info.STLayout
		resp.EmbeddingDim, resp.MaxSequenceLength, resp.Replicas = b.Dim, b.MaxSequenceLength, b.Info.Replicas
		resp.QueuedSequences, resp.DeviceErrors = st.QueuedSequences, st.DeviceErrors
	}
	if s.stopping.Load() {
		resp.Status, code = "shutting_down", http.StatusServiceUnavailable
	}
	data, err := json.Marshal(resp)
	if err != nil {
		s.writeError(x, api.Errorf(http.StatusInternalServerError, "", "encoding the response: %v", err))
		return
	}
	x.Header().Set("Content-Type", "application/json")
	x.WriteHeader(code)
	if x.r.Method != http.MethodHead {
		x.Write(data)
	}
}

// writeJSON sends an embedding response with the server-side time split in headers.
func (s *Server) writeJSON(x *exchange, res engine.Result, body []byte) {
	h := x.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Embedbench-Tokens", strconv.Itoa(x.tokens))
	h.Set("X-Embedbench-Tokenize-Ms", millis(res.Timing.Tokenize))
	h.Set("X-Embedbench-Queue-Ms", millis(res.Timing.Queue))
	h.Set("X-Embedbench-Inference-Ms", millis(res.Timing.Inference))
	h.Set("X-Embedbench-Total-Ms", millis(time.Since(x.start)))
	s.metrics.inputs.Add(float64(x.inputs))
	s.metrics.inputTokens.Add(float64(x.tokens))
	s.metrics.stageSeconds.WithLabelValues("tokenize").Observe(res.Timing.Tokenize.Seconds())
	s.metrics.stageSeconds.WithLabelValues("queue").Observe(res.Timing.Queue.Seconds())
	s.metrics.stageSeconds.WithLabelValues("inference").Observe(res.Timing.Inference.Seconds())
	s.release(x)
	_, _ = x.Write(body) // a failure is x.writeErr, which finish counts and logs
}

func millis(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Nanoseconds())/1e6, 'f', 3, 64)
}

func (s *Server) writeError(x *exchange, e *api.Error) {
	if e.Status >= 500 {
		x.failure = e.Message
	}
	body := api.AppendError(nil, e)
	h := x.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	x.WriteHeader(e.Status)
	if x.r.Method != http.MethodHead {
		_, _ = io.Copy(x, bytes.NewReader(body))
	}
}
