package merge

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"loco/pkg/golden"
	"loco/pkg/safetensors"
)

// TestSD15Table checks the forward-built table against the golden SD 1.5
// key lists: 354 layers, every LoCon name of the current-LyCORIS set maps
// to a checkpoint key of the right shape, and the LDM↔diffusers list agrees.
func TestSD15Table(t *testing.T) {
	tab := SD15Table()
	if n := len(tab.Layers); n != 354 {
		t.Fatalf("SD 1.5 table has %d layers, want 354 (282 UNet + 72 TE)", n)
	}
	root, ok := golden.Root()
	if !ok {
		t.Skip("no ../shared/golden")
	}
	keys := readTSV(t, root+"/sd15/unet_keys.tsv")
	for k, v := range readTSV(t, root+"/sd15/clip_keys.tsv") {
		keys[k] = v
	}
	names := map[string]bool{}
	for k := range readTSV(t, root+"/sd15/locon_unet_keys.tsv") {
		names[k[:strings.Index(k, ".")]] = true
	}
	if len(names) != 282 {
		t.Fatalf("locon_unet_keys.tsv has %d modules", len(names))
	}
	for n := range names {
		l := tab.Layers[n]
		if l == nil {
			t.Errorf("%s: not in the table", n)
			continue
		}
		if got, want := keys[l.Key], joinInts(l.Shape); got != want {
			t.Errorf("%s -> %s: shape %q in unet_keys.tsv, table says %q", n, l.Key, got, want)
		}
	}
	// The independent LDM → diffusers list.
	for ldm, diff := range readTSV(t, root+"/sd15/unet_ldm_to_diffusers.tsv") {
		n := "lora_unet_" + strings.ReplaceAll(diff, ".", "_")
		if l := tab.Layers[n]; l != nil && l.Key != ldm+".weight" {
			t.Errorf("%s: table key %s, unet_ldm_to_diffusers.tsv says %s", n, l.Key, ldm)
		}
	}
}

func TestCheckpointTableTiny(t *testing.T) {
	root, ok := golden.Root()
	if !ok {
		t.Skip("no ../shared/golden")
	}
	f, err := safetensors.Open(root + "/locon_unet_tiny/model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := CheckpointTable(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Layers) != 282 || tab.TEKeyPrefix != "" {
		t.Fatalf("tiny UNet: %d layers, TE prefix %q", len(tab.Layers), tab.TEKeyPrefix)
	}
}

func readTSV(t *testing.T, path string) map[string]string {
	t.Helper()
	fd, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(fd)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) >= 2 {
			out[f[0]] = f[1]
		}
	}
	return out
}

func joinInts(s []int) string {
	var b strings.Builder
	for i, d := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(itoa(d))
	}
	return b.String()
}

func itoa(d int) string { return strconv.Itoa(d) }
