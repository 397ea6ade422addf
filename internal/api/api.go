// Package api holds the wire types of the embedding service (the seed's models.py and the
// OpenAI embeddings API) and their validation. It knows nothing of HTTP servers or models:
// handlers decode with it, check limits with it, and encode responses with it.
package api

// EmbedRequest is the body of POST /embed: the seed's request plus TEI's options.
type EmbedRequest struct {
	Texts []string `json:"texts"`
	// Normalize L2-normalises each vector; true when absent (TEI's default). False returns the
	// model's own output: unit vectors anyway when the model ends in a Normalize module.
	Normalize bool `json:"normalize"`
	// PromptName names one of the model's prompts to prepend to every text (TEI's field);
	// empty: the model's default prompt, if any.
	PromptName string `json:"prompt_name"`
	// Truncate cuts texts longer than the model's limit; when false such a text is refused
	// with its token count. True when absent, as HF services do.
	Truncate bool `json:"truncate"`
}

// EmbedResponse is the seed's response of POST /embed.
type EmbedResponse struct {
	Embeddings    [][]float32 `json:"embeddings"`
	Model         string      `json:"model"`
	NumEmbeddings int         `json:"num_embeddings"`
	EmbeddingDim  int         `json:"embedding_dim"`
}

// Encoding formats of POST /v1/embeddings.
const (
	EncodingFloat  = "float"
	EncodingBase64 = "base64"
)

// OpenAIEmbeddingRequest is the body of POST /v1/embeddings after validation. Exactly one of
// Texts and TokenIDs is set: the API's input is a string, a list of strings, a list of token
// ids or a list of such lists.
type OpenAIEmbeddingRequest struct {
	Texts          []string
	TokenIDs       [][]int32
	Model          string
	EncodingFormat string // EncodingFloat or EncodingBase64
	// Dimensions keeps the first N components and renormalises (Matryoshka-style); 0 = all.
	Dimensions int
	// PromptName is an extension: as EmbedRequest.PromptName.
	PromptName string
	// Truncate is an extension, as EmbedRequest.Truncate (default true): false refuses a text
	// longer than the model's limit with a 422 instead of cutting it.
	Truncate bool
}

// NumInputs is the number of embeddings the request asks for.
func (r *OpenAIEmbeddingRequest) NumInputs() int {
	if r.TokenIDs != nil {
		return len(r.TokenIDs)
	}
	return len(r.Texts)
}

// Usage is the token accounting of an OpenAI embeddings response.
type Usage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// TokenizeRequest is the body of POST /tokenize.
type TokenizeRequest struct {
	Texts []string `json:"texts"`
	// AddSpecialTokens adds [CLS] and [SEP]; true when absent.
	AddSpecialTokens bool `json:"add_special_tokens"`
	// ReturnOffsets adds each token's byte span in its text.
	ReturnOffsets bool `json:"return_offsets"`
	// MaxLength truncates to this many tokens; 0 = no truncation.
	MaxLength int `json:"max_length"`
}

// TokenizeResponse answers POST /tokenize; TotalTokens counts tokens before truncation.
type TokenizeResponse struct {
	Tokens      [][]int32  `json:"tokens"`
	NumTokens   []int      `json:"num_tokens"`
	TotalTokens []int      `json:"total_tokens"`
	Offsets     [][][2]int `json:"offsets,omitempty"`
	Model       string     `json:"model"`
}

// HealthResponse answers GET /health: the seed's fields first, then what an operator needs.
type HealthResponse struct {
	Status       string `json:"status"` // "loading", "healthy", "degraded" or "shutting_down"
	Backend      string `json:"backend"`
	Model        string `json:"model"`
	GPUAvailable bool   `json:"gpu_available"`

	Engine  string `json:"engine"`
	Device  string `json:"device,omitempty"`
	DType   string `json:"dtype,omitempty"`
	Pooling string `json:"pooling,omitempty"`
	// PoolingSource says where Pooling comes from: "model" (its sentence-transformers files),
	// "flag" (--pooling overrode them) or "default" (a bare model: mean).
	PoolingSource string `json:"pooling_source,omitempty"`
	// IncludePrompt false: a prompt's tokens are left out of pooling.
	IncludePrompt *bool `json:"include_prompt,omitempty"`
	// Dense lists the model's Dense layers after pooling ("IN->OUT activation").
	Dense []string `json:"dense,omitempty"`
	// Normalize: the model's own vectors are unit length (a Normalize module).
	Normalize *bool `json:"normalize,omitempty"`
	// Prompts are the model's prompts by name; DefaultPromptName is applied when a request
	// names none.
	Prompts           map[string]string `json:"prompts,omitempty"`
	DefaultPromptName string            `json:"default_prompt_name,omitempty"`
	// SentenceTransformers is the layout of the model's sentence-transformers files: "classic",
	// "current", or absent for a bare model.
	SentenceTransformers string  `json:"sentence_transformers,omitempty"`
	Weights              string  `json:"weights,omitempty"`
	EmbeddingDim         int     `json:"embedding_dim,omitempty"`
	MaxSequenceLength    int     `json:"max_sequence_length,omitempty"`
	Replicas             int     `json:"replicas,omitempty"`
	QueuedSequences      int     `json:"queued_sequences"`
	InFlightRequests     int     `json:"in_flight_requests"`
	DeviceErrors         uint64  `json:"device_errors"`
	LastError            string  `json:"last_error,omitempty"`
	LastErrorAt          string  `json:"last_error_at,omitempty"`
	UptimeSeconds        float64 `json:"uptime_seconds"`
}
