package stress

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// loadingWait is how long a run waits for a service whose /health says 503 (still loading:
// compiling a model's shapes can take a minute) before measuring anyway.
const loadingWait = 3 * time.Minute

// fetchHealth asks the service's /health what it is. A service that cannot be reached is an
// error (the run would only measure connection errors), at once or, with waitReachable, once
// it has stayed unreachable that long (a Kubernetes Service refuses connections until a pod
// is ready); one that answers 503 is waited for; any other answer, even an error status, is
// recorded and the run goes on, since not every server has /health.
func fetchHealth(ctx context.Context, client *http.Client, serviceURL, apiKey string, waitReachable time.Duration) (ServerInfo, error) {
	info := ServerInfo{HealthURL: strings.TrimRight(serviceURL, "/") + "/health"}
	start := time.Now()
	giveUp := start.Add(max(loadingWait, waitReachable))
	var body []byte
	toldUnreachable := false
wait:
	for {
		status, b, err := getHealth(ctx, client, info.HealthURL, apiKey)
		switch {
		case err != nil && ctx.Err() != nil:
			return info, ctx.Err()
		case err != nil && time.Since(start) >= waitReachable:
			return info, fmt.Errorf("service at %s is unreachable: %w", serviceURL, err)
		case err != nil:
			if !toldUnreachable {
				slog.Info("service is unreachable; waiting for it", "url", info.HealthURL, "err", err, "for_at_most", waitReachable)
				toldUnreachable = true
			}
		default:
			info.HealthStatusCode, body = status, b
			if status != http.StatusServiceUnavailable || time.Now().After(giveUp) {
				break wait
			}
			slog.Info("service is not ready yet (/health answered 503); waiting", "url", info.HealthURL, "body", truncate(b, 200))
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return info, ctx.Err()
		}
	}
	if info.HealthStatusCode != http.StatusOK {
		slog.Warn("service health check did not answer 200; measuring anyway", "url", info.HealthURL, "status", info.HealthStatusCode, "body", truncate(body, 200))
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return info, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		info.HealthError = "/health body is not a JSON object: " + truncate(body, 200)
		return info, nil
	}
	// text reads a field as a string, or as its JSON text when it is something else.
	text := func(keys ...string) string {
		for _, k := range keys {
			raw, ok := fields[k]
			if !ok || string(raw) == "null" {
				continue
			}
			var s string
			if json.Unmarshal(raw, &s) == nil {
				return s
			}
			return string(raw)
		}
		return ""
	}
	info.Health = json.RawMessage(body)
	info.Model = text("model", "model_id")
	info.Engine = text("engine", "backend")
	info.DType = text("dtype")
	info.Weights = text("weights")
	return info, nil
}

// getHealth fetches a small JSON endpoint once: its status and body (up to 1 MiB).
func getHealth(ctx context.Context, client *http.Client, healthURL, apiKey string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthURL, nil)
	if err != nil {
		return 0, nil, err
	}
	if apiKey != "" { // vLLM asks for the key on /v1/models too
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("reading %s: %w", healthURL, err)
	}
	return resp.StatusCode, body, nil
}

// describeModel fills what /health did not say from the API flavour's own model endpoint:
// /v1/models for OpenAI-style servers (vLLM), /info for TEI. Failures are ignored: these
// endpoints are optional.
func describeModel(ctx context.Context, client *http.Client, api, serviceURL, apiKey string, info *ServerInfo) {
	base := strings.TrimRight(serviceURL, "/")
	switch {
	case api == APIOpenAI && info.Model == "":
		if status, body, err := getHealth(ctx, client, base+"/v1/models", apiKey); err == nil && status == http.StatusOK {
			info.Model = gjson.GetBytes(body, "data.0.id").String()
		}
	case api == APITEI && (info.Model == "" || info.DType == ""):
		if status, body, err := getHealth(ctx, client, base+"/info", apiKey); err == nil && status == http.StatusOK {
			doc := gjson.ParseBytes(body)
			if info.Model == "" {
				info.Model = doc.Get("model_id").String()
			}
			if info.DType == "" {
				info.DType = doc.Get("model_dtype").String()
			}
		}
	}
}
