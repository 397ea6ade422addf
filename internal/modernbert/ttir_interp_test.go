package modernbert

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// ttInterp runs the TTIR that ttBuilder writes on the CPU, one program at a time, so that the
// tests can check a kernel's arithmetic (and that every op's written types agree with its
// operands', which XLA's parser would otherwise be first to find) without a GPU. It knows the
// ops the emitter has and follows Triton's semantics for them; values are float64 whatever
// their element type (bf16 and fp16 roundings are not modelled).
type ttInterp struct {
	params []string    // the function's argument names, in order
	types  []string    // and their types
	body   []ttStmt    // the function's statements
	bufs   [][]float64 // the buffers behind the arguments, by argument index
}

type ttStmt struct {
	text string
	body []ttStmt // an scf.for's body, or a tt.reduce's combiner
}

type ttValue struct {
	typ   string // the MLIR type as written
	shape []int  // nil: a scalar
	elem  string
	data  []float64
	buf   int // for pointers: the argument whose buffer they point into
}

// parseTTIR reads a module that holds one tt.func.
func parseTTIR(text string) (*ttInterp, error) {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	var pos int
	var parse func() ([]ttStmt, error)
	parse = func() ([]ttStmt, error) {
		var out []ttStmt
		for pos < len(lines) {
			l := strings.TrimSpace(lines[pos])
			pos++
			switch {
			case l == "}" || strings.HasPrefix(l, "})"):
				if strings.HasPrefix(l, "})") {
					out = append(out, ttStmt{text: l})
				}
				return out, nil
			case strings.HasSuffix(l, "{"):
				body, err := parse()
				if err != nil {
					return nil, err
				}
				st := ttStmt{text: l, body: body}
				if strings.Contains(l, `"tt.reduce"`) { // its closing line carries the types
					st.text += " " + body[len(body)-1].text
					st.body = body[:len(body)-1]
				}
				out = append(out, st)
			default:
				out = append(out, ttStmt{text: l})
			}
		}
		return out, nil
	}
	top, err := parse()
	if err != nil {
		return nil, err
	}
	if len(top) != 1 || top[0].text != "module {" || len(top[0].body) != 1 {
		return nil, fmt.Errorf("want one module holding one function")
	}
	fn := top[0].body[0]
	m := regexp.MustCompile(`^tt\.func public @\w+\((.*)\) attributes \{noinline = false\} \{$`).FindStringSubmatch(fn.text)
	if m == nil {
		return nil, fmt.Errorf("bad function header %q", fn.text)
	}
	it := &ttInterp{body: fn.body}
	for _, p := range regexp.MustCompile(`(%\w+): (!tt\.ptr<\w+>) \{tt\.divisibility = 16 : i32\}`).FindAllStringSubmatch(m[1], -1) {
		it.params, it.types = append(it.params, p[1]), append(it.types, p[2])
	}
	return it, nil
}

func parseTTType(s string) (shape []int, elem string) {
	if !strings.HasPrefix(s, "tensor<") {
		return nil, s
	}
	parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(s, "tensor<"), ">"), "x")
	for i, p := range parts {
		d, err := strconv.Atoi(p)
		if err != nil {
			return shape, strings.Join(parts[i:], "x")
		}
		shape = append(shape, d)
	}
	return shape, ""
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// run executes one program with the given ids.
func (it *ttInterp) run(pid [3]int) error {
	env := map[string]*ttValue{}
	for i, p := range it.params {
		env[p] = &ttValue{buf: i, data: []float64{0}, typ: it.types[i], elem: it.types[i]}
	}
	_, err := it.exec(it.body, env, pid)
	return err
}

var (
	reDef      = regexp.MustCompile(`^(%\w+)(?::(\d+))? = (.*)$`)
	reOperands = regexp.MustCompile(`%\w+(?:#\d+)?`)
)

// exec runs stmts; it returns the values of a closing scf.yield or tt.reduce.return.
func (it *ttInterp) exec(stmts []ttStmt, env map[string]*ttValue, pid [3]int) ([]*ttValue, error) {
	get := func(name string) (*ttValue, error) {
		v, ok := env[name]
		if !ok {
			return nil, fmt.Errorf("%s used before it is defined", name)
		}
		return v, nil
	}
	for _, st := range stmts {
		l := st.text
		if l == "tt.return" || l == "scf.yield" {
			return nil, nil
		}
		if strings.HasPrefix(l, "scf.yield ") || strings.HasPrefix(l, "tt.reduce.return ") {
			var out []*ttValue
			for _, name := range reOperands.FindAllString(strings.SplitN(l, " : ", 2)[0], -1) {
				v, err := get(name)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			return out, nil
		}
		if strings.HasPrefix(l, "tt.store ") {
			f := reOperands.FindAllString(l, -1)
			p, err := get(f[0])
			if err != nil {
				return nil, err
			}
			v, err := get(f[1])
			if err != nil {
				return nil, err
			}
			if want := strings.SplitN(l, " : ", 2)[1]; p.typ != want || v.typ != (ttType{p.shape, pointee(p.elem)}).String() {
				return nil, fmt.Errorf("%q: pointer type %s, value %s", l, p.typ, v.typ)
			}
			for i, off := range p.data {
				if int(off) < 0 || int(off) >= len(it.bufs[p.buf]) {
					return nil, fmt.Errorf("%q: store out of bounds (%d of %d)", l, int(off), len(it.bufs[p.buf]))
				}
				it.bufs[p.buf][int(off)] = v.data[i]
			}
			continue
		}
		if strings.HasPrefix(l, "scf.for ") { // a loop that carries nothing
			if _, err := it.loop(st, env, pid); err != nil {
				return nil, err
			}
			continue
		}
		m := reDef.FindStringSubmatch(l)
		if m == nil {
			return nil, fmt.Errorf("cannot read %q", l)
		}
		name, rhs := m[1], m[3]
		if strings.HasPrefix(rhs, "scf.for ") {
			outs, err := it.loop(st, env, pid)
			if err != nil {
				return nil, err
			}
			for i, v := range outs {
				env[fmt.Sprintf("%s#%d", name, i)] = v
			}
			continue
		}
		v, err := it.eval(st, rhs, env, pid)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", l, err)
		}
		if _, dup := env[name]; dup {
			return nil, fmt.Errorf("%s defined twice", name)
		}
		env[name] = v
	}
	return nil, nil
}

func (it *ttInterp) loop(st ttStmt, env map[string]*ttValue, pid [3]int) ([]*ttValue, error) {
	m := regexp.MustCompile(`scf\.for (%\w+) = (%\w+) to (%\w+) step (%\w+)(?: iter_args\((.*)\) -> \((.*)\))? : i32 \{$`).FindStringSubmatch(st.text)
	if m == nil {
		return nil, fmt.Errorf("bad loop %q", st.text)
	}
	bound := func(name string) (int, error) {
		v, ok := env[name]
		if !ok || v.shape != nil || v.elem != "i32" {
			return 0, fmt.Errorf("loop bound %s is not an i32 scalar", name)
		}
		return int(v.data[0]), nil
	}
	lo, err := bound(m[2])
	if err != nil {
		return nil, err
	}
	hi, err := bound(m[3])
	if err != nil {
		return nil, err
	}
	step, err := bound(m[4])
	if err != nil {
		return nil, err
	}
	if step <= 0 {
		return nil, fmt.Errorf("loop step %d", step)
	}
	var names []string
	var cur []*ttValue
	for _, a := range strings.Split(m[5], ", ") {
		if a == "" {
			break // nothing carried
		}
		kv := strings.Split(a, " = ")
		v, ok := env[kv[1]]
		if !ok {
			return nil, fmt.Errorf("loop init %s undefined", kv[1])
		}
		names, cur = append(names, kv[0]), append(cur, v)
	}
	for i, t := range strings.Split(m[6], ", ") {
		if t == "" {
			break
		}
		if cur[i].typ != t {
			return nil, fmt.Errorf("loop carries %s as %s, declared %s", names[i], cur[i].typ, t)
		}
	}
	for iv := lo; iv < hi; iv += step {
		inner := make(map[string]*ttValue, len(env)+len(cur)+1)
		for k, v := range env {
			inner[k] = v
		}
		inner[m[1]] = &ttValue{typ: "i32", elem: "i32", data: []float64{float64(iv)}}
		for i, n := range names {
			inner[n] = cur[i]
		}
		next, err := it.exec(st.body, inner, pid)
		if err != nil {
			return nil, err
		}
		if len(next) != len(cur) {
			return nil, fmt.Errorf("loop yields %d values for %d", len(next), len(cur))
		}
		for i := range next {
			if next[i].typ != cur[i].typ {
				return nil, fmt.Errorf("loop yields %s for %s", next[i].typ, cur[i].typ)
			}
		}
		cur = next
	}
	return cur, nil
}

func newTTValue(typ string) *ttValue {
	shape, elem := parseTTType(typ)
	return &ttValue{typ: typ, shape: shape, elem: elem, data: make([]float64, numel(shape))}
}

// eval computes one op's value.
func (it *ttInterp) eval(st ttStmt, rhs string, env map[string]*ttValue, pid [3]int) (*ttValue, error) {
	fields := strings.Fields(rhs)
	op := fields[0]
	ops := reOperands.FindAllString(strings.SplitN(rhs, " : ", 2)[0], -1)
	var in []*ttValue
	for _, n := range ops {
		v, ok := env[n]
		if !ok {
			return nil, fmt.Errorf("%s undefined", n)
		}
		in = append(in, v)
	}
	typeAt := func(s string) string { return strings.TrimSpace(s) }
	colon := typeAt(rhs[strings.LastIndex(rhs, " : ")+3:])
	check := func(v *ttValue, typ string) error {
		if v.typ != typ {
			return fmt.Errorf("operand is %s, written %s", v.typ, typ)
		}
		return nil
	}
	switch op {
	case "tt.get_program_id":
		axis := map[string]int{"x": 0, "y": 1, "z": 2}[fields[1]]
		return &ttValue{typ: "i32", elem: "i32", data: []float64{float64(pid[axis])}}, nil
	case "arith.constant":
		v := newTTValue(colon)
		lit := fields[1]
		if strings.HasPrefix(lit, "dense<") {
			lit = strings.TrimSuffix(strings.TrimPrefix(lit, "dense<"), ">")
		}
		x, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			return nil, err
		}
		if v.shape == nil {
			v.data = []float64{x}
		}
		for i := range v.data {
			v.data[i] = x
		}
		return v, nil
	case "tt.make_range":
		v := newTTValue(colon)
		for i := range v.data {
			v.data[i] = float64(i)
		}
		return v, nil
	case "tt.splat":
		parts := strings.Split(colon, " -> ")
		if err := check(in[0], parts[0]); err != nil {
			return nil, err
		}
		v := newTTValue(parts[1])
		v.buf = in[0].buf
		for i := range v.data {
			v.data[i] = in[0].data[0]
		}
		return v, nil
	case "tt.expand_dims", "tt.broadcast":
		parts := strings.Split(colon, " -> ")
		if err := check(in[0], parts[0]); err != nil {
			return nil, err
		}
		v := newTTValue(parts[1])
		v.buf = in[0].buf
		if op == "tt.expand_dims" {
			copy(v.data, in[0].data)
			return v, nil
		}
		src := in[0].shape
		if len(src) != 2 || len(v.shape) != 2 {
			return nil, fmt.Errorf("broadcast of rank %d", len(src))
		}
		for r := range v.shape[0] {
			for c := range v.shape[1] {
				v.data[r*v.shape[1]+c] = in[0].data[(r%src[0])*src[1]+c%src[1]]
			}
		}
		return v, nil
	case "tt.addptr":
		parts := strings.Split(colon, ", ")
		if err := check(in[0], parts[0]); err != nil {
			return nil, err
		}
		if err := check(in[1], parts[1]); err != nil {
			return nil, err
		}
		v := newTTValue(parts[0])
		v.buf = in[0].buf
		for i := range v.data {
			v.data[i] = in[0].data[i] + in[1].data[i]
		}
		return v, nil
	case "tt.load":
		if err := check(in[0], colon); err != nil {
			return nil, err
		}
		shape, elem := parseTTType(colon)
		v := &ttValue{shape: shape, elem: pointee(elem), typ: ttType{shape, pointee(elem)}.String(), data: make([]float64, numel(shape))}
		buf := it.bufs[in[0].buf]
		for i, off := range in[0].data {
			if int(off) < 0 || int(off) >= len(buf) {
				return nil, fmt.Errorf("load out of bounds (%d of %d)", int(off), len(buf))
			}
			v.data[i] = buf[int(off)]
		}
		return v, nil
	case "arith.extf", "arith.truncf":
		parts := strings.Split(colon, " to ")
		if err := check(in[0], parts[0]); err != nil {
			return nil, err
		}
		v := newTTValue(parts[1])
		copy(v.data, in[0].data)
		return v, nil
	case "math.exp2", "math.erf":
		if err := check(in[0], colon); err != nil {
			return nil, err
		}
		f := math.Exp2
		if op == "math.erf" {
			f = math.Erf
		}
		v := newTTValue(colon)
		for i, x := range in[0].data {
			v.data[i] = f(x)
		}
		return v, nil
	case "arith.cmpi":
		if err := check(in[0], colon); err != nil {
			return nil, err
		}
		if err := check(in[1], colon); err != nil {
			return nil, err
		}
		shape, _ := parseTTType(colon)
		v := newTTValue(ttType{shape, "i1"}.String())
		if shape == nil {
			v.typ, v.elem = "i1", "i1"
		}
		pred := strings.TrimSuffix(fields[1], ",")
		for i := range v.data {
			a, b := in[0].data[i], in[1].data[i]
			var r bool
			switch pred {
			case "slt":
				r = a < b
			case "sle":
				r = a <= b
			case "sge":
				r = a >= b
			case "sgt":
				r = a > b
			case "eq":
				r = a == b
			default:
				return nil, fmt.Errorf("predicate %s", pred)
			}
			if r {
				v.data[i] = 1
			}
		}
		return v, nil
	case "arith.select":
		parts := strings.Split(colon, ", ")
		if err := check(in[0], parts[0]); err != nil {
			return nil, err
		}
		for _, x := range in[1:] {
			if err := check(x, parts[1]); err != nil {
				return nil, err
			}
		}
		v := newTTValue(parts[1])
		for i := range v.data {
			if in[0].data[i] != 0 {
				v.data[i] = in[1].data[i]
			} else {
				v.data[i] = in[2].data[i]
			}
		}
		return v, nil
	case "tt.dot":
		m := regexp.MustCompile(`: (\S+) \* (\S+) -> (\S+)$`).FindStringSubmatch(rhs)
		for i := range 3 {
			if err := check(in[i], m[i+1]); err != nil {
				return nil, err
			}
		}
		a, b := in[0], in[1]
		if a.elem != b.elem {
			return nil, fmt.Errorf("dot of %s and %s: Triton's products take one element type", a.elem, b.elem)
		}
		if a.shape[1] != b.shape[0] || a.shape[0] != in[2].shape[0] || b.shape[1] != in[2].shape[1] {
			return nil, fmt.Errorf("dot of %v and %v into %v", a.shape, b.shape, in[2].shape)
		}
		if a.shape[1] < 16 || a.shape[0] < 16 || b.shape[1] < 16 {
			return nil, fmt.Errorf("dot of %v and %v: Triton's products need 16 or more in every dimension", a.shape, b.shape)
		}
		v := newTTValue(m[3])
		mm, kk, nn := a.shape[0], a.shape[1], b.shape[1]
		for r := range mm {
			for c := range nn {
				s := in[2].data[r*nn+c]
				for j := range kk {
					s += a.data[r*kk+j] * b.data[j*nn+c]
				}
				v.data[r*nn+c] = s
			}
		}
		return v, nil
	}
	if strings.HasPrefix(op, `"tt.reduce"`) {
		return it.reduce(st, rhs, in[0])
	}
	// The binary ops.
	if err := check(in[0], colon); err != nil {
		return nil, err
	}
	if err := check(in[1], colon); err != nil {
		return nil, err
	}
	v := newTTValue(colon)
	if v.shape == nil {
		v.data = make([]float64, 1)
	}
	for i := range v.data {
		r, err := binaryOp(op, in[0].data[i], in[1].data[i])
		if err != nil {
			return nil, err
		}
		v.data[i] = r
	}
	return v, nil
}

func binaryOp(op string, a, b float64) (float64, error) {
	switch op {
	case "arith.addi", "arith.addf":
		return a + b, nil
	case "arith.subi", "arith.subf":
		return a - b, nil
	case "arith.muli", "arith.mulf":
		return a * b, nil
	case "arith.divf":
		return a / b, nil
	case "arith.divsi":
		return float64(int64(a) / int64(b)), nil
	case "arith.remsi":
		return float64(int64(a) % int64(b)), nil
	case "arith.minsi":
		return math.Min(a, b), nil
	case "arith.maxsi", "arith.maxnumf":
		return math.Max(a, b), nil
	case "arith.andi":
		if a != 0 && b != 0 {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("unknown op %s", op)
}

func (it *ttInterp) reduce(st ttStmt, rhs string, x *ttValue) (*ttValue, error) {
	m := regexp.MustCompile(`<\{axis = (\d+) : i32\}> \(\{ \}\) : \((\S+)\) -> (\S+)$`).FindStringSubmatch(rhs)
	if m == nil {
		return nil, fmt.Errorf("bad reduce %q", rhs)
	}
	if x.typ != m[2] {
		return nil, fmt.Errorf("reduce of %s written %s", x.typ, m[2])
	}
	if len(st.body) != 3 || !strings.HasPrefix(st.body[0].text, "^bb0(") || !strings.HasPrefix(st.body[2].text, "tt.reduce.return ") {
		return nil, fmt.Errorf("reduce combiner %v", st.body)
	}
	def := reDef.FindStringSubmatch(st.body[1].text)
	if def == nil {
		return nil, fmt.Errorf("reduce combiner %q", st.body[1].text)
	}
	combine := strings.Fields(def[3])[0]
	axis, _ := strconv.Atoi(m[1])
	v := newTTValue(m[3])
	switch {
	case len(x.shape) == 1 && axis == 0:
		v.data = []float64{x.data[0]}
		for _, e := range x.data[1:] {
			r, err := binaryOp(combine, v.data[0], e)
			if err != nil {
				return nil, err
			}
			v.data[0] = r
		}
	case len(x.shape) == 2 && axis == 1:
		cols := x.shape[1]
		for r := range x.shape[0] {
			acc := x.data[r*cols]
			for c := 1; c < cols; c++ {
				var err error
				if acc, err = binaryOp(combine, acc, x.data[r*cols+c]); err != nil {
					return nil, err
				}
			}
			v.data[r] = acc
		}
	default:
		return nil, fmt.Errorf("reduce of rank %d along %d", len(x.shape), axis)
	}
	return v, nil
}
