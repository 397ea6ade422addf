package report

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/fairness"
)

// chromium finds a Chromium binary; scripts/test.sh installs Debian's when it is missing.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no chromium on PATH (apt-get install chromium, or run scripts/test.sh): the report is not checked in a browser")
	return ""
}

// runChromium runs headless Chromium with network access cut off, so that anything the page
// tried to fetch would fail and show.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND",
		"--user-data-dir=" + t.TempDir(),
		// Let timers and animation frames run before the DOM is dumped or the screenshot taken.
		"--virtual-time-budget=20000",
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

func TestReportRendersInChromium(t *testing.T) {
	bin := chromium(t)
	dir := t.ArtifactDir()
	page := filepath.Join(dir, "report.html")
	runs := twoRuns(t)
	if err := WriteHTMLFile(page, runs, HTMLOptions{Fairness: []fairness.Result{sampleFairness}}); err != nil {
		t.Fatal(err)
	}
	url := "file://" + page

	dom := string(runChromium(t, bin, "--dump-dom", url))
	if !strings.Contains(dom, `data-charts-rendered="7"`) {
		t.Errorf("the page did not report 7 charts rendered; body: %s", firstTag(dom, "<body"))
	}
	for id, series := range map[string]int{
		"latency-spectrum": 3, "latency-throughput": 4, "throughput-over-time": 2, "p99-over-time": 2, "gpu-over-time": 2,
		"gpu-clock-over-time": 2, "latency-histogram": 2,
	} {
		tag := firstTag(dom, `<div class="chart" id="`+id+`"`)
		switch {
		case tag == "":
			t.Errorf("chart %s: element missing", id)
		case strings.Contains(tag, "data-render-error"):
			t.Errorf("chart %s failed: %s", id, tag)
		case !strings.Contains(tag, `data-rendered="true"`):
			t.Errorf("chart %s not rendered: %s", id, tag)
		case !strings.Contains(tag, fmt.Sprintf(`data-series="%d"`, series)):
			t.Errorf("chart %s: want %d series: %s", id, series, tag)
		}
	}
	if n := strings.Count(dom, "<canvas"); n < 7 {
		t.Errorf("%d canvases in the rendered page; want one per chart", n)
	}

	shot := filepath.Join(dir, "report.png")
	runChromium(t, bin, "--hide-scrollbars", "--window-size=1280,4000", "--screenshot="+shot, url)
	t.Logf("screenshot: %s (kept with go test -artifacts -outputdir DIR)", shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// Drawn charts put coloured lines on the page; an empty one is white and grey only.
	if c := colouredShare(img); c < 0.001 {
		t.Errorf("only %.4f%% of the screenshot is coloured: the charts look empty", 100*c)
	}
}

// TestLatencyCurveRendersInChromium draws the latency-against-throughput chart of a load
// sweep (three series: two lines each, one point per result file) and of a single run.
func TestLatencyCurveRendersInChromium(t *testing.T) {
	bin := chromium(t)
	dir := t.ArtifactDir()
	sweepRuns, err := Load(sweepFiles(t, sweep), nil)
	if err != nil {
		t.Fatal(err)
	}
	single := []Run{{Path: "one.json", Result: fixtureRun(t, "continuous", "bfloat16", 5*time.Millisecond, 50, false)}}
	NameRuns(single)
	for name, c := range map[string]struct {
		runs           []Run
		series, points int
	}{"sweep": {sweepRuns, 6, 2 * len(sweep)}, "single": {single, 2, 2}} {
		page := filepath.Join(dir, name+".html")
		if err := WriteHTMLFile(page, c.runs, HTMLOptions{}); err != nil {
			t.Fatal(err)
		}
		tag := firstTag(string(runChromium(t, bin, "--dump-dom", "file://"+page)), `<div class="chart" id="latency-throughput"`)
		want := fmt.Sprintf(`data-series="%d" data-points="%d" data-rendered="true"`, c.series, c.points)
		if !strings.Contains(tag, want) {
			t.Errorf("%s: the latency curve is %q; want %s", name, tag, want)
		}
	}
}

var tagEnd = regexp.MustCompile(`>`)

// firstTag returns the start tag beginning with prefix in html, or "".
func firstTag(html, prefix string) string {
	i := strings.Index(html, prefix)
	if i < 0 {
		return ""
	}
	end := tagEnd.FindStringIndex(html[i:])
	if end == nil {
		return html[i:]
	}
	return html[i : i+end[1]]
}

// colouredShare is the fraction of pixels whose channels differ markedly: chart lines, not
// text (black/grey) or background (white).
func colouredShare(img image.Image) float64 {
	b := img.Bounds()
	coloured, total := 0, 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			hi, lo := max(r, g, bl), min(r, g, bl)
			if hi-lo > 0x3000 {
				coloured++
			}
			total++
		}
	}
	return float64(coloured) / float64(total)
}

// In the browser, a label with markup shows in the latency curve's tooltip as text: the
// tooltip (HTML that ECharts builds from the formatter) holds no element the label made.
func TestTooltipShowsHostileLabelsAsText(t *testing.T) {
	bin := chromium(t)
	runs := []Run{{Label: `<img src=x onerror="document.body.dataset.pwned=1">`,
		Result: fixtureRun(t, "continuous", "bfloat16", 5*time.Millisecond, 50, false)}}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, runs, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	// After the page has drawn, show the curve's first tooltip and record what it holds.
	probe := `<script>setTimeout(function () {
  var chart = echarts.getInstanceByDom(document.getElementById("latency-throughput"));
  chart.dispatchAction({type: "showTip", seriesIndex: 0, dataIndex: 0});
  setTimeout(function () {
    var tip = document.querySelector("#latency-throughput div[style*='z-index']") || document.querySelector("#latency-throughput > div:last-child");
    document.body.setAttribute("data-tip-imgs", String(tip ? tip.getElementsByTagName("img").length : -1));
    document.body.setAttribute("data-tip-text", tip ? tip.textContent : "");
  }, 500);
}, 1000);</script></body>`
	page := filepath.Join(t.TempDir(), "tip.html")
	html := buf.String()
	end := strings.LastIndex(html, "</body>") // the first is inside ECharts' own code
	if err := os.WriteFile(page, []byte(html[:end]+probe+html[end+len("</body>"):]), 0o644); err != nil {
		t.Fatal(err)
	}
	dom := string(runChromium(t, bin, "--dump-dom", "file://"+page))
	body := firstTag(dom[strings.Index(dom, "</head>")+1:], "<body") // past the scripts inlined in <head>
	if !strings.Contains(body, `data-tip-imgs="0"`) || !strings.Contains(body, "onerror=") || strings.Contains(body, "data-pwned") {
		t.Errorf("the tooltip of a label with markup: %s", body)
	}
}
