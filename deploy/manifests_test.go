// Package deploy holds the container builds and Kubernetes manifests; its tests check that the
// manifests are valid Kubernetes objects and true to the embedbench binary they run.
package deploy

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// kinds are the object types the manifests may hold, by apiVersion and kind.
var kinds = map[string]func() any{
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"v1/PersistentVolumeClaim":               func() any { return &corev1.PersistentVolumeClaim{} },
	"v1/Pod":                                 func() any { return &corev1.Pod{} },
	"batch/v1/Job":                           func() any { return &batchv1.Job{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
}

// decodeStrict decodes every YAML document of data into its k8s.io/api type; an unknown or
// duplicate field, or a kind not in kinds, is an error.
func decodeStrict(name string, data []byte) ([]any, error) {
	var out []any
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", name, i, err)
		}
		mk := kinds[tm.APIVersion+"/"+tm.Kind]
		if mk == nil {
			return nil, fmt.Errorf("%s document %d: unexpected kind %s %s", name, i, tm.APIVersion, tm.Kind)
		}
		obj := mk()
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("%s document %d (%s): %w", name, i, tm.Kind, err)
		}
		out = append(out, obj)
	}
	return out, nil
}

// manifests decodes every file under k8s/.
type manifests struct {
	deployment          *appsv1.Deployment
	service             *corev1.Service
	hpa                 *autoscalingv2.HorizontalPodAutoscaler
	stressJob, mergeJob *batchv1.Job
	pvc                 *corev1.PersistentVolumeClaim
	pods                []*corev1.Pod
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests under k8s/ (%v)", err)
	}
	var m manifests
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeStrict(f, data)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) == 0 {
			t.Errorf("%s holds no object", f)
		}
		for _, o := range objs {
			switch o := o.(type) {
			case *appsv1.Deployment:
				m.deployment = o
			case *corev1.Service:
				m.service = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpa = o
			case *corev1.PersistentVolumeClaim:
				m.pvc = o
			case *corev1.Pod:
				m.pods = append(m.pods, o)
			case *batchv1.Job:
				switch o.Name {
				case "embedbench-stress":
					m.stressJob = o
				case "embedbench-merge":
					m.mergeJob = o
				default:
					t.Errorf("%s: unexpected Job %s", f, o.Name)
				}
			}
		}
	}
	if m.deployment == nil || m.service == nil || m.hpa == nil || m.stressJob == nil || m.mergeJob == nil || m.pvc == nil {
		t.Fatalf("missing manifests: %+v", m)
	}
	return m
}

func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	// A typo a reviewer might miss: a readiness probe that Kubernetes would silently drop.
	doc := `apiVersion: v1
kind: Pod
metadata: {name: x}
spec:
  containers:
    - name: x
      image: x
      readinesProbe: {httpGet: {path: /health, port: 8001}}
`
	if _, err := decodeStrict("typo.yaml", []byte(doc)); err == nil || !strings.Contains(err.Error(), "readinesProbe") {
		t.Errorf("an unknown field decoded: %v", err)
	}
}

// flagValue returns the value after --name in args ("" when absent).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func TestDeploymentDrainsAndProbes(t *testing.T) {
	m := load(t)
	d := m.deployment
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("container args %v: want embedbench serve", c.Args)
	}
	if flagValue(c.Args, "host") != "0.0.0.0" {
		t.Errorf("--host %q: the server would listen on 127.0.0.1 only", flagValue(c.Args, "host"))
	}
	var port, metricsPort corev1.ContainerPort
	for _, p := range c.Ports {
		switch p.Name {
		case "http":
			port = p
		case "metrics":
			metricsPort = p
		}
	}
	if port.ContainerPort == 0 || strconv.Itoa(int(port.ContainerPort)) != flagValue(c.Args, "port") {
		t.Errorf("container port %d, --port %q", port.ContainerPort, flagValue(c.Args, "port"))
	}
	// Probes and scrapes go to the port outside the connection limits, which clients can fill.
	if metricsPort.ContainerPort == 0 || strconv.Itoa(int(metricsPort.ContainerPort)) != flagValue(c.Args, "metrics-port") {
		t.Errorf("metrics container port %d, --metrics-port %q", metricsPort.ContainerPort, flagValue(c.Args, "metrics-port"))
	}

	// SIGTERM comes after preStop; the server then drains for up to --shutdown-timeout. Both
	// must fit in the grace period, or the kubelet kills requests in flight.
	shutdown, err := time.ParseDuration(flagValue(c.Args, "shutdown-timeout"))
	if err != nil {
		t.Fatalf("--shutdown-timeout: %v (the binary's default of 1m would be implicit)", err)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("no preStop sleep: the endpoint would still get requests after SIGTERM")
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	if grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second; grace <= preStop+shutdown {
		t.Errorf("grace period %s is not above preStop %s + --shutdown-timeout %s", grace, preStop, shutdown)
	}

	probe := func(name string, p *corev1.Probe) {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: none, or not an HTTP GET", name)
			return
		}
		if p.HTTPGet.Path != "/health" || p.HTTPGet.Port != intstr.FromString("metrics") {
			t.Errorf("%s probe: GET %s on %v, want /health on the metrics port", name, p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}
	probe("readiness", c.ReadinessProbe)
	probe("liveness", c.LivenessProbe)
	probe("startup", c.StartupProbe)
	// Warm-up downloads the weights and compiles every step size: minutes on a GPU.
	if s := c.StartupProbe; s != nil && time.Duration(s.PeriodSeconds*s.FailureThreshold)*time.Second < 5*time.Minute {
		t.Errorf("the startup probe gives warm-up only %ds", s.PeriodSeconds*s.FailureThreshold)
	}
	if flagValue(c.Args, "device") == "cuda" {
		gpus := c.Resources.Limits[corev1.ResourceName("nvidia.com/gpu")]
		if gpus.Value() < 1 {
			t.Error("--device cuda without an nvidia.com/gpu limit")
		}
	}
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" || ann["prometheus.io/port"] != strconv.Itoa(int(metricsPort.ContainerPort)) {
		t.Errorf("scrape annotations %v", ann)
	}
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("the pod may run as root")
	}
}

func TestServiceAndHPAReachTheDeployment(t *testing.T) {
	m := load(t)
	pod := m.deployment.Spec.Template
	for k, v := range m.service.Spec.Selector {
		if pod.Labels[k] != v {
			t.Errorf("Service selects %s=%s, the pods have %q", k, v, pod.Labels[k])
		}
	}
	for k, v := range m.deployment.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			t.Errorf("Deployment selects %s=%s, its pods have %q", k, v, pod.Labels[k])
		}
	}
	if len(m.service.Spec.Ports) != 1 || m.service.Spec.Ports[0].TargetPort != intstr.FromString("http") {
		t.Errorf("Service ports %+v", m.service.Spec.Ports)
	}

	h := m.hpa
	if ref := h.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != m.deployment.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA scales %+v", ref)
	}
	served := serverMetricNames(t)
	adapted := adapterMetricNames(t)
	if len(h.Spec.Metrics) == 0 {
		t.Fatal("HPA has no metric")
	}
	for _, mt := range h.Spec.Metrics {
		if mt.Type != autoscalingv2.PodsMetricSourceType || mt.Pods == nil {
			t.Errorf("HPA metric %+v: want a pods metric from /metrics", mt)
			continue
		}
		name := mt.Pods.Metric.Name
		if !served[name] {
			t.Errorf("HPA scales on %s, which internal/server does not export", name)
		}
		if !adapted[name] {
			t.Errorf("HPA scales on %s, which the Prometheus adapter values do not serve", name)
		}
		// Admission caps what a pod can hold: a target past --max-concurrent-requests is one
		// no pod reaches.
		if name == "embedbench_http_in_flight_requests" {
			limit, _ := strconv.Atoi(flagValue(m.deployment.Spec.Template.Spec.Containers[0].Args, "max-concurrent-requests"))
			if target := mt.Pods.Target.AverageValue; target == nil || limit == 0 || target.Value() >= int64(limit) {
				t.Errorf("in-flight target %v against --max-concurrent-requests %d: want a target below the limit", target, limit)
			}
		}
	}
}

// Every container with a read-only root file system has a volume where it writes: /tmp, and
// the hub cache under HF_HOME (a model or MS MARCO downloaded on start).
func TestWritablePathsAreMounted(t *testing.T) {
	m := load(t)
	for kind, spec := range map[string]corev1.PodSpec{"deployment": m.deployment.Spec.Template.Spec, "stress": m.stressJob.Spec.Template.Spec, "merge": m.mergeJob.Spec.Template.Spec} {
		for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				continue
			}
			mounted := func(path string) bool {
				for _, vm := range c.VolumeMounts {
					if path == vm.MountPath || strings.HasPrefix(path, strings.TrimRight(vm.MountPath, "/")+"/") {
						return !vm.ReadOnly
					}
				}
				return false
			}
			if c.Name != "merge" && !mounted("/tmp") {
				t.Errorf("%s/%s: read-only root and no writable /tmp", kind, c.Name)
			}
			for _, e := range c.Env {
				if e.Name == "HF_HOME" && !mounted(e.Value) {
					t.Errorf("%s/%s: HF_HOME %s is on the read-only root", kind, c.Name, e.Value)
				}
			}
			for _, flag := range []string{"output", "output-dir", "data-file"} {
				if v := flagValue(c.Args, flag); v != "" && !mounted(path.Dir(v)) && !mounted(v) {
					t.Errorf("%s/%s: --%s %s is not on a writable volume", kind, c.Name, flag, v)
				}
			}
		}
	}
}

func TestStressJobAndMerge(t *testing.T) {
	m := load(t)
	j := m.stressJob.Spec
	if j.CompletionMode == nil || *j.CompletionMode != batchv1.IndexedCompletion ||
		j.Parallelism == nil || j.Completions == nil || *j.Parallelism != *j.Completions || *j.Parallelism < 2 {
		t.Errorf("stress Job: want N >= 2 indexed pods all running at once, got %+v", j)
	}
	c := j.Template.Spec.Containers[0]
	svc := m.service
	want := fmt.Sprintf("http://%s:%d", svc.Name, svc.Spec.Ports[0].Port)
	if c.Args[0] != "stress" || flagValue(c.Args, "service-url") != want {
		t.Errorf("stress args %v: want stress --service-url %s", c.Args, want)
	}
	out := flagValue(c.Args, "output-dir")
	if !strings.Contains(out, "$(JOB_COMPLETION_INDEX)") {
		t.Errorf("--output-dir %q: the pods would write into one folder", out)
	}
	mc := m.mergeJob.Spec.Template.Spec.Containers[0]
	if mc.Args[0] != "merge" || flagValue(mc.Args, "output") == "" {
		t.Fatalf("merge args %v", mc.Args)
	}
	inputs := mc.Args[len(mc.Args)-1]
	if !strings.HasPrefix(out, strings.TrimRight(inputs, "/")+"/") {
		t.Errorf("merge reads %s, the stress pods write %s", inputs, out)
	}
	// Both see one volume, mounted where the paths say.
	for name, use := range map[string]struct {
		spec corev1.PodSpec
		path string
	}{"stress": {j.Template.Spec, out}, "merge": {m.mergeJob.Spec.Template.Spec, inputs}} {
		claim, volume := "", ""
		for _, v := range use.spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				claim, volume = v.PersistentVolumeClaim.ClaimName, v.Name
			}
		}
		if claim != m.pvc.Name {
			t.Errorf("%s Job mounts claim %q, want %s", name, claim, m.pvc.Name)
		}
		at := ""
		for _, vm := range use.spec.Containers[0].VolumeMounts {
			if vm.Name == volume {
				at = vm.MountPath
			}
		}
		if at == "" || !strings.HasPrefix(use.path, strings.TrimRight(at, "/")+"/") {
			t.Errorf("%s Job uses %s, but mounts the results volume at %q", name, use.path, at)
		}
	}
	if len(m.pvc.Spec.AccessModes) != 1 || m.pvc.Spec.AccessModes[0] != corev1.ReadWriteMany {
		t.Errorf("results volume %v: N pods on several nodes need ReadWriteMany", m.pvc.Spec.AccessModes)
	}
}

// TestArgsAreTheBinarysFlags runs the embedbench binary's --help for every command the
// manifests run and checks each flag they pass is one it has.
func TestArgsAreTheBinarysFlags(t *testing.T) {
	m := load(t)
	bin := binary(t)
	var containers []corev1.Container
	for _, s := range []corev1.PodSpec{m.deployment.Spec.Template.Spec, m.stressJob.Spec.Template.Spec, m.mergeJob.Spec.Template.Spec} {
		containers = append(containers, s.InitContainers...)
		containers = append(containers, s.Containers...)
	}
	checked := 0
	for _, c := range containers {
		if !strings.Contains(c.Image, "embedbench") {
			continue
		}
		known := commandFlags(t, bin, c.Args[0])
		for _, a := range c.Args[1:] {
			name, ok := strings.CutPrefix(a, "--")
			if !ok {
				continue
			}
			name, _, _ = strings.Cut(name, "=")
			if !known[name] {
				t.Errorf("container %s: embedbench %s has no flag --%s", c.Name, c.Args[0], name)
			}
			checked++
		}
	}
	if checked < 10 {
		t.Errorf("only %d flags checked", checked)
	}
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds embedbench as the CPU image does (static, cgo off) once per test run.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "embedbench-deploy-test")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "embedbench")
		cmd := exec.Command("go", "build", "-trimpath", "-o", binPath, "../cmd/embedbench")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building embedbench with CGO_ENABLED=0: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// commandFlags lists the flags `embedbench <command> --help` prints.
func commandFlags(t *testing.T, bin, command string) map[string]bool {
	t.Helper()
	out, err := exec.Command(bin, command, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("embedbench %s --help: %v\n%s", command, err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllSubmatch(out, -1) {
		flags[string(m[1])] = true
	}
	if len(flags) == 0 {
		t.Fatalf("embedbench %s --help lists no flags:\n%s", command, out)
	}
	return flags
}

// serverMetricNames are the metric names internal/server defines: the string literals
// beginning "embedbench_" in its source (what /metrics exports; its own tests scrape them).
func serverMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob("../internal/server/*.go")
	names := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "embedbench_") {
					names[s] = true
				}
			}
			return true
		})
	}
	if !names["embedbench_queue_tokens"] && len(names) == 0 {
		t.Fatal("found no metric names in internal/server")
	}
	return names
}

// adapterValues is the part of the prometheus-adapter chart's values the HPA depends on.
type adapterValues struct {
	Prometheus struct {
		URL  string `json:"url"`
		Port int    `json:"port"`
	} `json:"prometheus"`
	Rules struct {
		Default bool `json:"default"`
		Custom  []struct {
			SeriesQuery string `json:"seriesQuery"`
			Resources   struct {
				Overrides map[string]struct {
					Resource string `json:"resource"`
				} `json:"overrides"`
			} `json:"resources"`
			Name struct {
				Matches string `json:"matches"`
				As      string `json:"as"`
			} `json:"name"`
			MetricsQuery string `json:"metricsQuery"`
		} `json:"custom"`
	} `json:"rules"`
}

func adapterMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("prometheus-adapter/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v adapterValues
	if err := yaml.UnmarshalStrict(data, &v); err != nil {
		t.Fatalf("prometheus-adapter/values.yaml: %v", err)
	}
	names := map[string]bool{}
	served := serverMetricNames(t)
	for _, r := range v.Rules.Custom {
		series := regexp.MustCompile(`^[a-z_:]+`).FindString(r.SeriesQuery)
		if !served[series] {
			t.Errorf("adapter rule reads %q, which internal/server does not export", series)
		}
		if r.Resources.Overrides["pod"].Resource != "pod" || r.Resources.Overrides["namespace"].Resource != "namespace" {
			t.Errorf("adapter rule for %s does not map pod and namespace labels: %+v", series, r.Resources)
		}
		if !regexp.MustCompile(r.Name.Matches).MatchString(series) || !bytes.Contains([]byte(r.MetricsQuery), []byte("<<.Series>>")) {
			t.Errorf("adapter rule for %s: name %+v, query %q", series, r.Name, r.MetricsQuery)
		}
		names[r.Name.As] = true
	}
	return names
}
