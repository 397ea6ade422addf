// Package engine turns embedding jobs into device batches: a queue, the two batching policies
// the project compares (sequential, what a HuggingFace/LangChain service does; continuous, what
// vLLM does), and model replicas. It knows nothing of HTTP.
package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/embedbench/embedbench/internal/parallel"
)

// Tokenizer turns a text into ids with [CLS]/[SEP] added, truncated on the right when
// maxLength > 0, and reports the length before truncation. *tokenizer.Tokenizer satisfies it.
type Tokenizer interface {
	AppendIDs(dst []int32, text string, maxLength int) (ids []int32, totalTokens int)
}

// BatchStats is what one Run did on its device.
type BatchStats struct {
	RealTokens int           // tokens of the sequences
	SlotTokens int           // tokens the device computed, padding included
	Steps      int           // device executions
	Device     time.Duration // time spent in them
	PerStep    []StepUse     // each execution's size (the rung of the step ladder) and fill
}

// StepUse is one device execution: its token slots, the real tokens it carried, and where its
// wall time went, phase by phase, as the runner names them.
type StepUse struct {
	Slots, RealTokens int
	Phases            []Phase
}

// Phase is one part of a step's wall time.
type Phase struct {
	Name string
	Took time.Duration
}

// Runner embeds a batch of sequences on one device and returns one pooled vector per
// sequence, in order; poolFrom, when not nil, gives each sequence the number of leading tokens
// left out of its pooling (a prompt, see Prompts.Exclude). One goroutine drives one Runner: it
// need not be safe for concurrent use.
type Runner interface {
	Run(ctx context.Context, seqs [][]int32, poolFrom []int) ([][]float32, BatchStats, error)
}

// StepFitter is a Runner that can say how many of the leading sequences of these lengths one
// device step holds (at least one). The continuous engine uses it to fill steps exactly rather
// than spill a few sequences into a nearly empty second step.
type StepFitter interface {
	FitStep(lengths []int) int
}

// StepCutter is a StepFitter that can also price a step and fit a smaller one: what running a
// busy replica's batch on a fuller, smaller step (Config.BusyBatchCut) asks.
type StepCutter interface {
	StepFitter
	// StepSlots is the token slots of the step that holds these sequences.
	StepSlots(lengths []int) int
	// FitStepBelow is the most leading sequences one step of fewer than slots slots holds (0
	// when not even the first fits), and that step's slots.
	FitStepBelow(lengths []int, slots int) (n, below int)
}

// Job is one client request: texts to tokenize, or sequences already tokenized.
type Job struct {
	Texts []string
	IDs   [][]int32 // used when Texts is nil; ids as given, special tokens included
	// Truncate cuts texts longer than the sequence limit; when false such a text fails the job
	// with a *TooLongError.
	Truncate bool
	// PromptName names one of Config.Prompts to prepend to every text; "" means the default
	// prompt, if there is one. An unknown name fails the job with an *UnknownPromptError.
	PromptName string
}

func (j Job) size() int {
	if j.Texts != nil {
		return len(j.Texts)
	}
	return len(j.IDs)
}

// Result is a finished job: one vector per input, in order, as the model pooled them (the
// caller normalises), with the input's real token counts and where the time went.
type Result struct {
	Vectors [][]float32
	Tokens  []int
	Timing  Timing
}

// TotalTokens sums Tokens.
func (r Result) TotalTokens() int {
	total := 0
	for _, n := range r.Tokens {
		total += n
	}
	return total
}

// Timing splits a job's time in the engine.
type Timing struct {
	Tokenize  time.Duration
	Queue     time.Duration // from enqueue until its first sequence reached a device
	Inference time.Duration // from then until its last sequence came back
}

// Engine embeds jobs. Embed blocks until the job is done, fails, or ctx ends; a job whose ctx
// ends while queued is dropped before it reaches a device.
type Engine interface {
	Embed(ctx context.Context, job Job) (Result, error)
	// Stats is a snapshot of the counters.
	Stats() Stats
	// Close stops accepting jobs, finishes those already accepted, and stops the workers.
	Close()
}

// Stats are an engine's counters since it started.
type Stats struct {
	QueuedRequests   int // accepted and not yet answered, the ones on a device included
	QueuedSequences  int
	QueuedTokens     int // -1 when the engine cannot know (the sequential one tokenizes on its worker)
	BusyReplicas     int
	Replicas         int
	Batches          uint64
	Sequences        uint64 // embedded on a device
	RealTokens       uint64
	SlotTokens       uint64
	DroppedSequences uint64 // removed from the queue before a device saw them (client gone)
	// CutBatches were a busy replica's batches run on the rung below, their spill left queued.
	CutBatches   uint64
	DeviceErrors uint64
	LastError    string
	LastErrorAt  time.Time
}

// BatchReport describes one device batch to an observer (metrics).
type BatchReport struct {
	Replica   int
	Requests  int
	Sequences int
	Stats     BatchStats
	Err       error
}

// Prompts are the model's instructions for texts (sentence-transformers' prompts): the
// prompt's text is prepended to a text before tokenizing, and counts in its tokens and its
// length limit.
type Prompts struct {
	Texts   map[string]string // by name
	Default string            // the name applied when a job names none; "" = none
	// Exclude leaves the prompt's tokens out of pooling (include_prompt false): as
	// sentence-transformers counts them, the prompt tokenized alone less its final [SEP], so
	// [CLS] is left out too.
	Exclude bool
}

// Config is what both engines share.
type Config struct {
	// Tokenizer is needed for jobs with texts; without it only token-id jobs are accepted.
	Tokenizer Tokenizer
	Prompts   Prompts
	// MaxSequenceLength is the most tokens one sequence may have, specials included.
	MaxSequenceLength int
	// MaxQueuedSequences bounds the queue; a job that does not fit fails with ErrOverloaded.
	MaxQueuedSequences int
	// OnBatch, when set, is called after every device batch, on the device's goroutine.
	OnBatch func(BatchReport)
	// BatchesPerReplica is how many batches the continuous engine may have in flight on one
	// replica (default 1). With 2, the next batch is formed and packed while the device runs
	// the current one; a replica with a batch in flight starts another once the queue holds
	// half its tokens and at least MinPipelineTokens, so a lightly loaded replica still takes
	// everything waiting the moment it is free. The Runner must then allow concurrent Run
	// calls (*modernbert.Model does).
	BatchesPerReplica int
	// MinPipelineTokens is the least work a second batch in flight carries: below it, the
	// step's fixed cost outweighs its work, and the queue waits for the replica to be free.
	MinPipelineTokens int
	// BusyBatchCut, between 0 and 1, lets a busy replica's batch that spills a little over a
	// step size run on the size below when that step is fuller, leaving at most this share of
	// the batch's tokens to the next batch (0: never; serve's default is 0.15, which took 256
	// one-text clients on an H200 from 15.5 k to 17.0 k requests/s, the open loop's tails no
	// longer, in run 48). It delays the sequences left over by one batch for a fuller step.
	// Only runners that can price and fit smaller steps (StepCutter) are cut.
	BusyBatchCut float64
}

func (c Config) check() error {
	if c.MaxSequenceLength < 2 {
		return fmt.Errorf("engine: max sequence length %d is below 2 ([CLS] and [SEP])", c.MaxSequenceLength)
	}
	if _, ok := c.Prompts.Texts[c.Prompts.Default]; c.Prompts.Default != "" && !ok {
		return fmt.Errorf("engine: default prompt %q is not one of the prompts", c.Prompts.Default)
	}
	if c.MaxQueuedSequences < 1 {
		return fmt.Errorf("engine: max queued sequences %d must be positive", c.MaxQueuedSequences)
	}
	if c.BusyBatchCut < 0 || c.BusyBatchCut > 1 || math.IsNaN(c.BusyBatchCut) {
		return fmt.Errorf("engine: busy batch cut %g is outside 0..1", c.BusyBatchCut)
	}
	return nil
}

var (
	// ErrOverloaded means the queue is full; retry later.
	ErrOverloaded = errors.New("the engine's queue is full")
	// ErrClosed means the engine is shutting down and accepts no more jobs.
	ErrClosed = errors.New("the engine is shutting down")
)

// TooLongError refuses a text longer than the sequence limit when truncation is off.
type TooLongError struct {
	Index  int // the text's position in the job
	Tokens int // its token count, specials included
	Max    int
}

func (e *TooLongError) Error() string {
	return fmt.Sprintf("text %d has %d tokens, more than the limit of %d (send \"truncate\": true to cut it)", e.Index, e.Tokens, e.Max)
}

// UnknownPromptError refuses a job naming a prompt the model does not have.
type UnknownPromptError struct {
	Name  string
	Known []string // sorted
}

func (e *UnknownPromptError) Error() string {
	if len(e.Known) == 0 {
		return fmt.Sprintf("prompt_name %q: the model defines no prompts", e.Name)
	}
	return fmt.Sprintf("prompt_name %q is not one of the model's prompts: %s", e.Name, strings.Join(e.Known, ", "))
}

// prompt is the text a job's texts get in front, and whether the job has one (a prompt may be
// empty: sentence-transformers then still leaves [CLS] out of pooling when it excludes prompts).
func (c *Config) prompt(job Job) (text string, ok bool, err error) {
	name := job.PromptName
	if name == "" {
		name = c.Prompts.Default
	}
	if name == "" {
		return "", false, nil
	}
	text, ok = c.Prompts.Texts[name]
	if !ok {
		known := make([]string, 0, len(c.Prompts.Texts))
		for n := range c.Prompts.Texts {
			known = append(known, n)
		}
		sort.Strings(known)
		return "", false, &UnknownPromptError{Name: name, Known: known}
	}
	if job.Texts == nil {
		if job.PromptName != "" {
			return "", false, &InvalidInputError{Index: 0, Reason: "prompt_name applies to texts, not to token ids (tokenize the prompt with the text instead)"}
		}
		return "", false, nil // token ids are embedded as given, default prompt or not
	}
	return text, true, nil
}

// CheckJob refuses, before it is queued, a job that can never run (an unknown prompt).
func (c *Config) CheckJob(job Job) error {
	_, _, err := c.prompt(job)
	return err
}

// InvalidInputError refuses a pre-tokenized sequence the model cannot take.
type InvalidInputError struct {
	Index  int
	Reason string
}

func (e *InvalidInputError) Error() string { return fmt.Sprintf("input %d: %s", e.Index, e.Reason) }

// DeviceError is a failed device batch; every job in it fails with it.
type DeviceError struct {
	Replica int
	Err     error
}

func (e *DeviceError) Error() string { return fmt.Sprintf("replica %d: %v", e.Replica, e.Err) }

func (e *DeviceError) Unwrap() error { return e.Err }

// Tokenize turns a job into sequences as the engines do, for callers that drive a model
// themselves (the embed command). See tokenize.
func (c Config) Tokenize(job Job) (seqs [][]int32, poolFrom int, err error) { return tokenize(&c, job) }

// tokenize turns a job into sequences, its prompt (if any) in front of each text, and says
// how many leading tokens of each are left out of pooling (0 unless Prompts.Exclude). All ids
// share one backing array per job: a request's ids are one allocation, not one per text.
func tokenize(cfg *Config, job Job) (seqs [][]int32, poolFrom int, err error) {
	prompt, hasPrompt, err := cfg.prompt(job)
	if err != nil {
		return nil, 0, err
	}
	if job.Texts == nil {
		for i, ids := range job.IDs {
			switch {
			case len(ids) == 0:
				return nil, 0, &InvalidInputError{Index: i, Reason: "no token ids"}
			case len(ids) > cfg.MaxSequenceLength:
				return nil, 0, &InvalidInputError{Index: i, Reason: fmt.Sprintf("%d tokens, more than the limit of %d", len(ids), cfg.MaxSequenceLength)}
			}
		}
		return job.IDs, 0, nil
	}
	if cfg.Tokenizer == nil {
		return nil, 0, errors.New("engine: no tokenizer to turn texts into token ids")
	}
	if hasPrompt && cfg.Prompts.Exclude {
		// sentence-transformers: the prompt tokenized alone (truncated as texts are), less 1.
		ids, _ := cfg.Tokenizer.AppendIDs(nil, prompt, cfg.MaxSequenceLength)
		poolFrom = max(0, len(ids)-1)
	}
	maxLength := cfg.MaxSequenceLength
	if !job.Truncate {
		maxLength = 0 // count them all, to refuse with the true length
	}
	seqs = make([][]int32, len(job.Texts))
	// A request of many texts is tokenized on several cores, in contiguous parts: 32 passages
	// took 0.65 ms on one, an eighth of such a request's time on the GPU. The first error by
	// index is the one returned, whatever the split.
	parts := min(runtime.GOMAXPROCS(0), len(job.Texts)/minTextsPerPart)
	if parts <= 1 {
		if err := tokenizeRange(cfg, job, prompt, hasPrompt, maxLength, 0, len(job.Texts), seqs); err != nil {
			return nil, 0, err
		}
		return seqs, poolFrom, nil
	}
	errs := make([]error, parts)
	parallel.Ranges(parts, len(job.Texts), func(p, lo, hi int) {
		errs[p] = tokenizeRange(cfg, job, prompt, hasPrompt, maxLength, lo, hi, seqs)
	})
	for _, err := range errs {
		if err != nil {
			return nil, 0, err
		}
	}
	return seqs, poolFrom, nil
}

// minTextsPerPart is the fewest texts worth a goroutine of their own when tokenizing a job.
const minTextsPerPart = 8

// tokenizeRange tokenizes job.Texts[lo:hi] into seqs[lo:hi], sharing one backing array.
func tokenizeRange(cfg *Config, job Job, prompt string, hasPrompt bool, maxLength, lo, hi int, seqs [][]int32) error {
	flat := make([]int32, 0, 64*(hi-lo))
	var joined []byte
	for i := lo; i < hi; i++ {
		text := job.Texts[i]
		if hasPrompt {
			joined = append(append(joined[:0], prompt...), text...)
			text = string(joined)
		}
		start := len(flat)
		var total int
		flat, total = cfg.Tokenizer.AppendIDs(flat, text, maxLength)
		if total > cfg.MaxSequenceLength && !job.Truncate {
			return &TooLongError{Index: i, Tokens: total, Max: cfg.MaxSequenceLength}
		}
		seqs[i] = flat[start:len(flat):len(flat)]
	}
	return nil
}

func seqLens(seqs [][]int32) []int {
	lens := make([]int, len(seqs))
	for i, s := range seqs {
		lens[i] = len(s)
	}
	return lens
}
