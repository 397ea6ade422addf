package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/embedbench/embedbench/internal/dataset"
	"github.com/embedbench/embedbench/internal/hub"
	"github.com/embedbench/embedbench/internal/localdata"
)

// Passages is the demo's workload and where it came from.
type Passages struct {
	Texts  []string
	Source string
	// Synthetic is true when no MS MARCO passages could be found and the demo made its own.
	Synthetic bool
}

// hubAttempt bounds the MS MARCO download: a demo that hangs on a slow network is worse than
// one that says it used its own sample.
const hubAttempt = 2 * time.Minute

// preparePassages finds count passages: the data file, else the shared MS MARCO sample, else
// MS MARCO from the hub (when online and not offline), else a synthetic sample.
func preparePassages(ctx context.Context, dataFile string, count int, offline bool, log *slog.Logger) (Passages, error) {
	if dataFile != "" {
		texts, err := dataset.Load(dataFile)
		if err != nil {
			return Passages{}, err
		}
		return Passages{Texts: texts, Source: dataFile}, nil
	}
	dir, err := localdata.MSMARCODir()
	if err == nil {
		s, err := dataset.SampleSource(ctx, dir, count, 42)
		switch {
		case err == nil:
			return Passages{Texts: s.Passages, Source: "MS MARCO sample in " + dir}, nil
		case errors.Is(err, dataset.ErrTooFewPassages) && len(s.Passages) > 0:
			// Real passages, fewer than asked: the load cycles through them, which beats
			// made-up text (the GPU demo asks for 10,000; the shared sample holds about 5,900).
			log.Info("the shared MS MARCO sample holds fewer passages than asked; using all of them", "dir", dir, "passages", len(s.Passages), "asked", count)
			return Passages{Texts: s.Passages, Source: fmt.Sprintf("MS MARCO sample in %s (all %d distinct passages, of %d asked)", dir, len(s.Passages), count)}, nil
		}
		log.Warn("shared MS MARCO passages unusable", "dir", dir, "err", err)
	} else {
		log.Info("no shared MS MARCO sample", "err", err)
	}
	if !offline {
		hctx, cancel := context.WithTimeout(ctx, hubAttempt)
		path, err := dataset.ResolveSource(hctx, hub.NewClientFromEnv(), "msmarco")
		if err == nil {
			var s dataset.Sample
			s, err = dataset.SampleSource(hctx, path, count, 42)
			if err == nil {
				cancel()
				return Passages{Texts: s.Passages, Source: "MS MARCO from the hub (" + path + ")"}, nil
			}
		}
		cancel()
		if ctx.Err() != nil {
			return Passages{}, ctx.Err()
		}
		log.Warn("MS MARCO download failed; using a synthetic sample", "err", err)
	}
	why := "no MS MARCO found, and the hub unreachable"
	if offline {
		why = "no MS MARCO found offline"
	}
	return Passages{Texts: syntheticPassages(count, 42), Source: "synthetic passages (" + why + ")", Synthetic: true}, nil
}

// words are common English words the synthetic passages are made of: the tokenizer sees
// ordinary text, split into ordinary sub-words.
var words = strings.Fields(`the of and to in is was for on that with as by it at from this be are
an or which his her their has have had not but were all can also one two first new more
other after its into time year years city people water used may such most made during
between over world state known some only many when than these would about part area
called well government three river national early later where under through each since
system university school family war history population found both however include use
public company several large began south north west east high including season number
four while small second local language life based series main long development million
until being around country best food body health blood heart cells disease treatment
symptoms average cost price pay salary hours days weeks months temperature weather
minutes miles distance definition meaning means term refers process energy light sound
form type types different common often usually example small large body plant animal
species protein vitamin calories weight loss business tax income insurance credit
account bank service services customer product software computer data information
network internet phone email address code number county population census town village`)

// syntheticPassages makes count distinct passages with MS MARCO's shape (about 55 words on
// average, a long right tail): not real text, but real tokenizer work and real lengths.
func syntheticPassages(count int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]string, 0, count)
	var b strings.Builder
	for i := range count {
		n := int(math.Round(math.Exp(3.9 + 0.45*rng.NormFloat64())))
		n = min(max(n, 8), 250)
		b.Reset()
		fmt.Fprintf(&b, "Passage %d:", i+1) // keeps every passage distinct
		for j := range n {
			w := words[rng.IntN(len(words))]
			if j%12 == 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			b.WriteByte(' ')
			b.WriteString(w)
			if j%12 == 11 {
				b.WriteByte('.')
			}
		}
		b.WriteByte('.')
		out = append(out, b.String())
	}
	return out
}
