package stress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// fetchHealth asks the service's /health what it is. A service that cannot be reached at all
// is an error (the run would only measure connection errors); any answer, even an error
// status, is recorded and the run goes on, since not every server has /health.
func fetchHealth(ctx context.Context, client *http.Client, serviceURL string) (ServerInfo, error) {
	info := ServerInfo{HealthURL: strings.TrimRight(serviceURL, "/") + "/health"}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, info.HealthURL, nil)
	if err != nil {
		return info, fmt.Errorf("service URL %q: %w", serviceURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return info, err
		}
		return info, fmt.Errorf("service at %s is unreachable: %w", serviceURL, err)
	}
	defer resp.Body.Close()
	info.HealthStatusCode = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		info.HealthError = "reading /health: " + err.Error()
		return info, nil
	}
	if resp.StatusCode != http.StatusOK {
		slog.Warn("service health check did not answer 200; measuring anyway", "url", info.HealthURL, "status", resp.Status, "body", truncate(body, 200))
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
