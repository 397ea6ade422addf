package modernbert

import (
	"context"
	"testing"
)

// TestParityXLA runs the HF parity checks on the XLA backend (GPU machine): set
// EMBEDBENCH_XLA_PLUGIN or have the JAX CUDA plugin installed. Skipped elsewhere. On a machine
// with several GPUs it also places a replica on the last one.
func TestParityXLA(t *testing.T) {
	plugin := FindXLAPlugin()
	if plugin == "" {
		t.Skip("no PJRT plugin (set " + EnvXLAPlugin + ")")
	}
	for _, dir := range parityFixtures() {
		cfg, w, ref := loadFixture(t, dir)
		seqs := refSeqs(ref)
		maxLen, rowLengths := fixtureLengths(cfg, 128, 512)
		for _, pc := range parityCases {
			t.Run(fixtureName(dir)+"/"+pc.dtype.String()+"/"+pc.pooling.String(), func(t *testing.T) {
				opts := Options{Backend: "xla:" + plugin, DType: pc.dtype, Pooling: pc.pooling, Normalize: pc.normalize,
					MaxSequenceLength: maxLen, RowLengths: rowLengths, MaxBatchTokens: 4096}
				m, err := New(context.Background(), cfg, w, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				for _, layout := range []Layout{Packed, Padded} {
					got, _, err := m.Embed(context.Background(), seqs, layout)
					if err != nil {
						t.Fatal(err)
					}
					checkParity(t, "xla, mixed batch, "+layout.String(), pc, ref, got)
				}
				if n := m.backend.NumDevices(); n > 1 {
					opts.DeviceIndex = n - 1
					other, err := New(context.Background(), cfg, w, opts)
					if err != nil {
						t.Fatal(err)
					}
					defer other.Close()
					got, _, err := other.Embed(context.Background(), seqs, Packed)
					if err != nil {
						t.Fatal(err)
					}
					checkParity(t, "xla, device "+other.Info().Device, pc, ref, got)
				}
			})
		}
	}
}
