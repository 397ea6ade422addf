package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Error is a client-facing failure: an HTTP status and a readable message. Its JSON form
// (see AppendError) is OpenAI's error object, which FastAPI-style clients can also read.
type Error struct {
	Status  int
	Type    string // OpenAI's error type, e.g. "invalid_request_error"
	Param   string // the offending field, when there is one
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf builds an Error with a formatted message and the type that fits the status.
func Errorf(status int, param, format string, args ...any) *Error {
	return &Error{Status: status, Type: typeForStatus(status), Param: param, Message: fmt.Sprintf(format, args...)}
}

func typeForStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusServiceUnavailable:
		return "service_unavailable"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// Limits are the bounds a request is checked against.
type Limits struct {
	MaxInputs int // texts (or token lists) in one request
	VocabSize int // token ids must lie in [0, VocabSize)
	Dim       int // the model's embedding size: the most `dimensions` may ask for
	// MaxSequenceLength bounds a token-id input (texts are truncated or refused by the engine,
	// which tokenizes them).
	MaxSequenceLength int
}

// DecodeEmbedRequest parses and validates a POST /embed body.
func DecodeEmbedRequest(body []byte, lim Limits) (EmbedRequest, *Error) {
	req := EmbedRequest{Normalize: true, Truncate: true}
	fields, apiErr := decodeObject(body)
	if apiErr != nil {
		return req, apiErr
	}
	if req.Texts, apiErr = decodeTexts(fields, "texts", lim); apiErr != nil {
		return req, apiErr
	}
	if apiErr = decodeBool(fields, "normalize", &req.Normalize); apiErr != nil {
		return req, apiErr
	}
	if apiErr = decodeBool(fields, "truncate", &req.Truncate); apiErr != nil {
		return req, apiErr
	}
	if apiErr = decodeString(fields, "prompt_name", &req.PromptName); apiErr != nil {
		return req, apiErr
	}
	return req, nil
}

// DecodeTokenizeRequest parses and validates a POST /tokenize body.
func DecodeTokenizeRequest(body []byte, lim Limits) (TokenizeRequest, *Error) {
	req := TokenizeRequest{AddSpecialTokens: true}
	fields, apiErr := decodeObject(body)
	if apiErr != nil {
		return req, apiErr
	}
	if req.Texts, apiErr = decodeTexts(fields, "texts", lim); apiErr != nil {
		return req, apiErr
	}
	if apiErr = decodeBool(fields, "add_special_tokens", &req.AddSpecialTokens); apiErr != nil {
		return req, apiErr
	}
	if apiErr = decodeBool(fields, "return_offsets", &req.ReturnOffsets); apiErr != nil {
		return req, apiErr
	}
	if raw, ok := fields["max_length"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &req.MaxLength); err != nil || req.MaxLength < 0 {
			return req, Errorf(http.StatusUnprocessableEntity, "max_length", "max_length must be a non-negative integer")
		}
	}
	return req, nil
}

// DecodeOpenAIEmbeddingRequest parses and validates a POST /v1/embeddings body.
func DecodeOpenAIEmbeddingRequest(body []byte, lim Limits) (OpenAIEmbeddingRequest, *Error) {
	req := OpenAIEmbeddingRequest{EncodingFormat: EncodingFloat, Truncate: true}
	fields, apiErr := decodeObject(body)
	if apiErr != nil {
		return req, apiErr
	}
	raw, ok := fields["input"]
	if !ok || isNull(raw) {
		return req, Errorf(http.StatusUnprocessableEntity, "input", "field 'input' is required: a string, a list of strings, or token ids")
	}
	if apiErr = decodeInput(raw, lim, &req); apiErr != nil {
		return req, apiErr
	}
	if raw, ok := fields["model"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &req.Model); err != nil {
			return req, Errorf(http.StatusUnprocessableEntity, "model", "model must be a string")
		}
	}
	if raw, ok := fields["encoding_format"]; ok && !isNull(raw) {
		var format string
		if err := json.Unmarshal(raw, &format); err != nil || (format != EncodingFloat && format != EncodingBase64) {
			return req, Errorf(http.StatusUnprocessableEntity, "encoding_format", "encoding_format must be %q or %q", EncodingFloat, EncodingBase64)
		}
		req.EncodingFormat = format
	}
	if raw, ok := fields["dimensions"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &req.Dimensions); err != nil || req.Dimensions < 1 {
			return req, Errorf(http.StatusUnprocessableEntity, "dimensions", "dimensions must be a positive integer")
		}
		if lim.Dim > 0 && req.Dimensions > lim.Dim {
			return req, Errorf(http.StatusUnprocessableEntity, "dimensions", "dimensions %d exceeds the model's embedding size %d", req.Dimensions, lim.Dim)
		}
	}
	if apiErr = decodeString(fields, "prompt_name", &req.PromptName); apiErr != nil {
		return req, apiErr
	}
	if apiErr = decodeBool(fields, "truncate", &req.Truncate); apiErr != nil {
		return req, apiErr
	}
	return req, nil
}

// decodeObject splits a JSON object into its fields: a syntax error is the client's malformed
// JSON (400), valid JSON of another kind is a well-formed but unusable body (422).
func decodeObject(body []byte) (map[string]json.RawMessage, *Error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, Errorf(http.StatusBadRequest, "", "malformed JSON: the request body is empty")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		var syntax *json.SyntaxError
		switch {
		case errors.As(err, &syntax):
			return nil, Errorf(http.StatusBadRequest, "", "malformed JSON at byte %d: %v", syntax.Offset, err)
		default:
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				return nil, Errorf(http.StatusUnprocessableEntity, "", "the request body must be a JSON object, got %s", typeErr.Value)
			}
			return nil, Errorf(http.StatusBadRequest, "", "malformed JSON: %v", err)
		}
	}
	if fields == nil {
		return nil, Errorf(http.StatusUnprocessableEntity, "", "the request body must be a JSON object, got null")
	}
	return fields, nil
}

func decodeTexts(fields map[string]json.RawMessage, name string, lim Limits) ([]string, *Error) {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return nil, Errorf(http.StatusUnprocessableEntity, name, "field '%s' is required: a non-empty list of strings", name)
	}
	if firstByte(raw) != '[' {
		return nil, Errorf(http.StatusUnprocessableEntity, name, "field '%s' must be a list of strings, got %s", name, kindOf(raw))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, Errorf(http.StatusBadRequest, name, "malformed JSON in '%s': %v", name, err)
	}
	return decodeStrings(items, name, lim)
}

func decodeStrings(items []json.RawMessage, name string, lim Limits) ([]string, *Error) {
	if len(items) == 0 {
		return nil, Errorf(http.StatusUnprocessableEntity, name, "field '%s' must not be empty", name)
	}
	if lim.MaxInputs > 0 && len(items) > lim.MaxInputs {
		return nil, Errorf(http.StatusRequestEntityTooLarge, name, "too many inputs in '%s': %d, the limit is %d (--max-client-batch-size)", name, len(items), lim.MaxInputs)
	}
	texts := make([]string, len(items))
	for i, item := range items {
		if firstByte(item) != '"' {
			return nil, Errorf(http.StatusUnprocessableEntity, name, "%s[%d] must be a string, got %s", name, i, kindOf(item))
		}
		// encoding/json replaces invalid UTF-8 with U+FFFD, which is what we want.
		if err := json.Unmarshal(item, &texts[i]); err != nil {
			return nil, Errorf(http.StatusBadRequest, name, "malformed string %s[%d]: %v", name, i, err)
		}
	}
	return texts, nil
}

func decodeInput(raw json.RawMessage, lim Limits, req *OpenAIEmbeddingRequest) *Error {
	switch firstByte(raw) {
	case '"':
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return Errorf(http.StatusBadRequest, "input", "malformed string in 'input': %v", err)
		}
		req.Texts = []string{text}
		return nil
	case '[':
	default:
		return Errorf(http.StatusUnprocessableEntity, "input", "'input' must be a string, a list of strings, or token ids, got %s", kindOf(raw))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return Errorf(http.StatusBadRequest, "input", "malformed JSON in 'input': %v", err)
	}
	if len(items) == 0 {
		return Errorf(http.StatusUnprocessableEntity, "input", "'input' must not be empty")
	}
	switch firstByte(items[0]) {
	case '"':
		texts, apiErr := decodeStrings(items, "input", lim)
		req.Texts = texts
		return apiErr
	case '[':
		if lim.MaxInputs > 0 && len(items) > lim.MaxInputs {
			return Errorf(http.StatusRequestEntityTooLarge, "input", "too many inputs: %d, the limit is %d (--max-client-batch-size)", len(items), lim.MaxInputs)
		}
		req.TokenIDs = make([][]int32, len(items))
		for i, item := range items {
			ids, apiErr := decodeTokenIDs(item, fmt.Sprintf("input[%d]", i), lim)
			if apiErr != nil {
				return apiErr
			}
			req.TokenIDs[i] = ids
		}
		return nil
	default:
		ids, apiErr := decodeTokenIDs(raw, "input", lim)
		req.TokenIDs = [][]int32{ids}
		return apiErr
	}
}

// tokenID is one token id as JSON gives it: an integer, and not null (which encoding/json
// would leave as 0, a real token).
type tokenID int64

func (t *tokenID) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(string(b), 10, 64)
	*t = tokenID(v)
	return err
}

func decodeTokenIDs(raw json.RawMessage, name string, lim Limits) ([]int32, *Error) {
	var ids []tokenID
	if firstByte(raw) != '[' {
		return nil, Errorf(http.StatusUnprocessableEntity, "input", "%s must be a list of integer token ids, got %s", name, kindOf(raw))
	}
	if json.Unmarshal(raw, &ids) != nil {
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) == nil {
			for i, item := range items {
				var id tokenID
				if id.UnmarshalJSON(item) != nil {
					got := kindOf(item)
					if got == "a number" {
						got = string(item)
					}
					return nil, Errorf(http.StatusUnprocessableEntity, "input", "%s[%d] must be an integer token id, got %s", name, i, got)
				}
			}
		}
		return nil, Errorf(http.StatusBadRequest, "input", "malformed JSON in %s", name)
	}
	if len(ids) == 0 {
		return nil, Errorf(http.StatusUnprocessableEntity, "input", "%s must hold at least one token id", name)
	}
	if lim.MaxSequenceLength > 0 && len(ids) > lim.MaxSequenceLength {
		return nil, Errorf(http.StatusUnprocessableEntity, "input", "%s has %d tokens, the model's limit is %d", name, len(ids), lim.MaxSequenceLength)
	}
	out := make([]int32, len(ids))
	for i, id := range ids {
		if id < 0 || (lim.VocabSize > 0 && id >= tokenID(lim.VocabSize)) {
			return nil, Errorf(http.StatusUnprocessableEntity, "input", "%s[%d] = %d is not a token id (vocabulary size %d)", name, i, id, lim.VocabSize)
		}
		out[i] = int32(id)
	}
	return out, nil
}

func decodeBool(fields map[string]json.RawMessage, name string, dst *bool) *Error {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return Errorf(http.StatusUnprocessableEntity, name, "field '%s' must be true or false, got %s", name, kindOf(raw))
	}
	return nil
}

// decodeString reads an optional string field (null as absent).
func decodeString(fields map[string]json.RawMessage, name string, dst *string) *Error {
	raw, ok := fields[name]
	if !ok || isNull(raw) {
		return nil
	}
	if firstByte(raw) != '"' || json.Unmarshal(raw, dst) != nil {
		return Errorf(http.StatusUnprocessableEntity, name, "field '%s' must be a string, got %s", name, kindOf(raw))
	}
	return nil
}

func firstByte(raw json.RawMessage) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// kindOf names a JSON value's kind for error messages.
func kindOf(raw json.RawMessage) string {
	switch firstByte(raw) {
	case '"':
		return "a string"
	case '[':
		return "a list"
	case '{':
		return "an object"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}
