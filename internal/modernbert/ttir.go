package modernbert

import (
	"fmt"
	"strconv"
	"strings"
)

// ttBuilder writes a Triton IR (TTIR) function as MLIR text, one SSA value at a time, so that
// a kernel reads like the Triton Python it stands for. XLA parses and compiles the text itself
// (see triton.go); no Go library emits Triton IR, hence this small emitter. It covers the ops
// our kernels use and nothing more.
type ttBuilder struct {
	sb    strings.Builder
	next  int
	depth int
}

// ttType is a TTIR value's type: a scalar (shape nil) or a tensor of elem, where elem is an
// MLIR element type ("i32", "f32", "bf16", "i1") or a pointer ("!tt.ptr<f16>").
type ttType struct {
	shape []int
	elem  string
}

func (t ttType) String() string {
	if t.shape == nil {
		return t.elem
	}
	dims := make([]string, len(t.shape))
	for i, d := range t.shape {
		dims[i] = strconv.Itoa(d)
	}
	return "tensor<" + strings.Join(dims, "x") + "x" + t.elem + ">"
}

// of is t's shape holding elem.
func (t ttType) of(elem string) ttType { return ttType{t.shape, elem} }

// ttPtr is the pointer type to elem.
func ttPtr(elem string) string { return "!tt.ptr<" + elem + ">" }

// pointee is what a pointer element type points to.
func pointee(elem string) string {
	return strings.TrimSuffix(strings.TrimPrefix(elem, "!tt.ptr<"), ">")
}

// ttArg is a kernel argument: a pointer to elem, named as in the IR ("%q").
type ttArg struct{ name, elem string }

// begin opens the module and the kernel function name over args (XLA's buffers, operands then
// results, each at least 16-byte aligned), returning each argument's pointer value by name.
func (b *ttBuilder) begin(name string, args []ttArg) map[string]ttVal {
	params := make([]string, len(args))
	ptr := map[string]ttVal{}
	for i, a := range args {
		params[i] = fmt.Sprintf("%s: %s {tt.divisibility = 16 : i32}", a.name, ttPtr(a.elem))
		ptr[a.name] = ttVal{a.name, ttType{elem: ttPtr(a.elem)}}
	}
	b.line("module {")
	b.depth++
	b.line("tt.func public @%s(%s) attributes {noinline = false} {", name, strings.Join(params, ", "))
	b.depth++
	return ptr
}

// end closes what begin opened and returns the module's text.
func (b *ttBuilder) end() string {
	b.line("tt.return")
	b.depth--
	b.line("}")
	b.depth--
	b.line("}")
	return b.sb.String()
}

// ttVal is an SSA value.
type ttVal struct {
	name string
	t    ttType
}

func (v ttVal) String() string { return v.name }

func (b *ttBuilder) fresh() string {
	b.next++
	return fmt.Sprintf("%%v%d", b.next)
}

func (b *ttBuilder) line(format string, args ...any) {
	b.sb.WriteString(strings.Repeat("  ", b.depth))
	fmt.Fprintf(&b.sb, format, args...)
	b.sb.WriteByte('\n')
}

// def emits "%new = <format>" and returns %new of type t.
func (b *ttBuilder) def(t ttType, format string, args ...any) ttVal {
	v := ttVal{b.fresh(), t}
	b.line("%s = "+format, append([]any{v.name}, args...)...)
	return v
}

// f32Literal writes x as an MLIR float literal (which needs a decimal point).
func f32Literal(x float64) string { return strconv.FormatFloat(float64(float32(x)), 'e', 9, 64) }

func (b *ttBuilder) i32(x int) ttVal {
	return b.def(ttType{elem: "i32"}, "arith.constant %d : i32", x)
}

// fill is a tensor of shape holding the constant literal (an MLIR attribute value) of elem.
func (b *ttBuilder) fill(shape []int, elem, literal string) ttVal {
	t := ttType{shape, elem}
	return b.def(t, "arith.constant dense<%s> : %s", literal, t)
}

func (b *ttBuilder) fillF32(shape []int, x float64) ttVal { return b.fill(shape, "f32", f32Literal(x)) }

func (b *ttBuilder) programID(axis string) ttVal {
	return b.def(ttType{elem: "i32"}, "tt.get_program_id %s : i32", axis)
}

// arange is 0, 1, ..., n-1 (n a power of two).
func (b *ttBuilder) arange(n int) ttVal {
	t := ttType{[]int{n}, "i32"}
	return b.def(t, "tt.make_range {end = %d : i32, start = 0 : i32} : %s", n, t)
}

func (b *ttBuilder) splat(v ttVal, shape []int) ttVal {
	t := ttType{shape, v.t.elem}
	return b.def(t, "tt.splat %s : %s -> %s", v, v.t, t)
}

func (b *ttBuilder) expandDims(v ttVal, axis int) ttVal {
	shape := append(append(append([]int{}, v.t.shape[:axis]...), 1), v.t.shape[axis:]...)
	t := ttType{shape, v.t.elem}
	return b.def(t, "tt.expand_dims %s {axis = %d : i32} : %s -> %s", v, axis, v.t, t)
}

func (b *ttBuilder) broadcast(v ttVal, shape []int) ttVal {
	t := ttType{shape, v.t.elem}
	return b.def(t, "tt.broadcast %s : %s -> %s", v, v.t, t)
}

// column is v [n] as a [n, cols] tensor (each row one value); row is v [n] as [rows, n].
func (b *ttBuilder) column(v ttVal, cols int) ttVal {
	return b.broadcast(b.expandDims(v, 1), []int{v.t.shape[0], cols})
}

func (b *ttBuilder) row(v ttVal, rows int) ttVal {
	return b.broadcast(b.expandDims(v, 0), []int{rows, v.t.shape[0]})
}

// op is a binary arith op on two values of one type ("arith.addi", "arith.mulf", ...).
func (b *ttBuilder) op(name string, x, y ttVal) ttVal {
	return b.def(x.t, "%s %s, %s : %s", name, x, y, x.t)
}

func (b *ttBuilder) cmpi(pred string, x, y ttVal) ttVal {
	return b.def(x.t.of("i1"), "arith.cmpi %s, %s, %s : %s", pred, x, y, x.t)
}

func (b *ttBuilder) sel(cond, x, y ttVal) ttVal {
	return b.def(x.t, "arith.select %s, %s, %s : %s, %s", cond, x, y, cond.t, x.t)
}

// convert is a cast op ("arith.extf", "arith.truncf") of v to elem.
func (b *ttBuilder) convert(name string, v ttVal, elem string) ttVal {
	t := v.t.of(elem)
	return b.def(t, "%s %s : %s to %s", name, v, v.t, t)
}

func (b *ttBuilder) exp2(v ttVal) ttVal { return b.def(v.t, "math.exp2 %s : %s", v, v.t) }

// erf is the error function (f32; Triton lowers it to libdevice's erff).
func (b *ttBuilder) erf(v ttVal) ttVal { return b.def(v.t, "math.erf %s : %s", v, v.t) }

func (b *ttBuilder) addptr(p, offset ttVal) ttVal {
	return b.def(p.t, "tt.addptr %s, %s : %s, %s", p, offset, p.t, offset.t)
}

// gather loads base[offsets] for a tensor of i32 offsets.
func (b *ttBuilder) gather(base, offsets ttVal) ttVal {
	p := b.addptr(b.splat(base, offsets.t.shape), offsets)
	return b.def(p.t.of(pointee(base.t.elem)), "tt.load %s : %s", p, p.t)
}

// scatter stores v at base[offsets].
func (b *ttBuilder) scatter(base, offsets, v ttVal) {
	p := b.addptr(b.splat(base, offsets.t.shape), offsets)
	b.line("tt.store %s, %s : %s", p, v, p.t)
}

// dot is a·b + c, accumulating in c's type.
func (b *ttBuilder) dot(x, y, acc ttVal) ttVal {
	return b.def(acc.t, "tt.dot %s, %s, %s : %s * %s -> %s", x, y, acc, x.t, y.t, acc.t)
}

// reduce folds v along axis with combine (a binary arith op on v's element type).
func (b *ttBuilder) reduce(v ttVal, axis int, combine string) ttVal {
	var t ttType
	t.elem = v.t.elem
	if len(v.t.shape) > 1 {
		t.shape = append(append([]int{}, v.t.shape[:axis]...), v.t.shape[axis+1:]...)
	}
	r, x, y, z := b.fresh(), b.fresh(), b.fresh(), b.fresh()
	b.line(`%s = "tt.reduce"(%s) <{axis = %d : i32}> ({`, r, v, axis)
	b.line("^bb0(%s: %s, %s: %s):", x, t.elem, y, t.elem)
	b.depth++
	b.line("%s = %s %s, %s : %s", z, combine, x, y, t.elem)
	b.line("tt.reduce.return %s : %s", z, t.elem)
	b.depth--
	b.line("}) : (%s) -> %s", v.t, t)
	return ttVal{r, t}
}

// forEach emits an scf.for over i32 iv from lo to hi by step that carries nothing.
func (b *ttBuilder) forEach(lo, hi, step ttVal, body func(iv ttVal)) {
	iv := ttVal{b.fresh(), ttType{elem: "i32"}}
	b.line("scf.for %s = %s to %s step %s : i32 {", iv, lo, hi, step)
	b.depth++
	body(iv)
	b.line("scf.yield")
	b.depth--
	b.line("}")
}

// loop emits an scf.for over i32 iv from lo to hi by step carrying init; body returns the
// carried values' next state. It returns their final state.
func (b *ttBuilder) loop(lo, hi, step ttVal, init []ttVal, body func(iv ttVal, carried []ttVal) []ttVal) []ttVal {
	res := b.fresh()
	iv := ttVal{b.fresh(), ttType{elem: "i32"}}
	carried := make([]ttVal, len(init))
	args, types := make([]string, len(init)), make([]string, len(init))
	for i, v := range init {
		carried[i] = ttVal{b.fresh(), v.t}
		args[i] = carried[i].name + " = " + v.name
		types[i] = v.t.String()
	}
	b.line("%s:%d = scf.for %s = %s to %s step %s iter_args(%s) -> (%s) : i32 {",
		res, len(init), iv, lo, hi, step, strings.Join(args, ", "), strings.Join(types, ", "))
	b.depth++
	next := body(iv, carried)
	names := make([]string, len(next))
	for i, v := range next {
		names[i] = v.name
	}
	b.line("scf.yield %s : %s", strings.Join(names, ", "), strings.Join(types, ", "))
	b.depth--
	b.line("}")
	out := make([]ttVal, len(init))
	for i, v := range init {
		out[i] = ttVal{fmt.Sprintf("%s#%d", res, i), v.t}
	}
	return out
}
