package dataset

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"loco/pkg/imageio"
	"loco/pkg/manifest"
)

// Options configure a Scan.
type Options struct {
	TrainRoots       []string // parents of train concept folders (at least one)
	RegRoots         []string // parents of regularization concept folders
	CaptionExtension string   // default DefaultCaptionExtension
	// AllCaptionLines keeps every non-empty line of a caption file, joined
	// by "\n", as kohya reads them with enable_wildcard (loco-train
	// --enable-wildcard picks one per use); otherwise only the first line.
	AllCaptionLines bool
	Jobs            int   // files read and hashed at once; default GOMAXPROCS
	MaxPixels       int64 // refuse larger images; default imageio.DefaultMaxPixels
	// Strict turns every skipped folder or file into an error (the scan
	// still reports them all, then fails).
	Strict bool
	// Progress, if set, is called after each file is read (from worker
	// goroutines).
	Progress func(done, total int)
}

// Problem is a folder or file that was skipped.
type Problem struct {
	Path string
	Err  error
}

func (p Problem) String() string { return fmt.Sprintf("%s: %v", p.Path, p.Err) }

// Folder summarises one concept folder.
type Folder struct {
	Path    string
	Name    string
	IsReg   bool
	Repeats int
	Caption string // the folder caption
	Found   int    // image files found
	Images  int    // images kept (readable)
	// Without a caption file, using the folder caption.
	NoCaptionFile []string
	// Reg folders: images used by the balancing and samples per epoch.
	RegUsed    int
	RegSamples int
	// Files counted by the kohya_ss GUI's step estimate (.jpg .jpeg .png
	// .webp, any case).
	GUIFiles int
}

// Samples is the number of samples the folder contributes per epoch.
func (f *Folder) Samples() int {
	if f.IsReg {
		return f.RegSamples
	}
	return f.Images * f.Repeats
}

// Result is what a scan found.
type Result struct {
	Records  []*manifest.Record
	Folders  []*Folder
	Problems []Problem // skipped folders and files, in scan order
	Notes    []string  // other warnings (mixed-case extensions, missing captions ...)

	TrainImages int // distinct train images
	RegImages   int // distinct reg images kept
	T           int // train samples per epoch: Σ repeats × images
	RegRaw      int // Σ repeats × images over reg folders, before balancing
	RegBalanced int // reg samples per epoch after balancing
	GUITrain    int // the GUI's T: repeats × (.jpg .jpeg .png .webp files)
	Bytes       int64
}

// kohyaExts are the extensions sd-scripts searches (without the optional
// AVIF / JPEG XL plugins), lower case.
var kohyaExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".webp": true, ".bmp": true}

// imageExt classifies a file name: an image extension in any case, and
// whether kohya would find it (all lower or all upper case only, since it
// globs "*.png" and "*.PNG").
func imageExt(name string) (isImage, kohyaFinds bool) {
	ext := filepath.Ext(name)
	if !kohyaExts[strings.ToLower(ext)] {
		return false, false
	}
	return true, ext == strings.ToLower(ext) || ext == strings.ToUpper(ext)
}

// Scan finds and reads every image of the dataset. It returns an error for
// a missing or unreadable root, when no train image is found, and (with
// Strict) when anything was skipped; per-file problems are otherwise in
// Result.Problems.
func Scan(opt Options) (*Result, error) {
	if len(opt.TrainRoots) == 0 {
		return nil, errors.New("no train folder given")
	}
	opt.CaptionExtension = NormalizeCaptionExtension(opt.CaptionExtension)
	if opt.Jobs <= 0 {
		opt.Jobs = runtime.GOMAXPROCS(0)
	}
	res := &Result{}
	type job struct {
		folder *Folder
		path   string
	}
	var jobs []job
	for _, set := range []struct {
		roots []string
		reg   bool
	}{{opt.TrainRoots, false}, {opt.RegRoots, true}} {
		seen := map[string]bool{}
		for _, root := range set.roots {
			folders, err := listConcepts(root, set.reg, res, seen)
			if err != nil {
				return nil, err
			}
			for _, f := range folders {
				files := listImages(f, res)
				for _, p := range files {
					jobs = append(jobs, job{f, p})
				}
				res.Folders = append(res.Folders, f)
			}
		}
	}

	// Read, hash and probe in parallel; results land by index, so the
	// output order does not depend on scheduling.
	recs := make([]*manifest.Record, len(jobs))
	errs := make([]error, len(jobs))
	var next, done int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(opt.Jobs, max(len(jobs), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(jobs) {
					return
				}
				recs[i], buf, errs[i] = readImage(jobs[i].path, jobs[i].folder, opt, buf)
				if opt.Progress != nil {
					mu.Lock()
					done++
					d := done
					mu.Unlock()
					opt.Progress(d, len(jobs))
				}
			}
		}()
	}
	wg.Wait()

	for i, j := range jobs {
		if errs[i] != nil {
			res.Problems = append(res.Problems, Problem{j.path, errs[i]})
			continue
		}
		r := recs[i]
		j.folder.Images++
		if r.CaptionSrc == manifest.CaptionFromFolder {
			j.folder.NoCaptionFile = append(j.folder.NoCaptionFile, filepath.Base(j.path))
		}
		res.Bytes += r.Size
		res.Records = append(res.Records, r)
	}
	summarise(res, opt.CaptionExtension)

	if res.TrainImages == 0 {
		return res, fmt.Errorf("no train images found in %s: the train folder must be the parent of concept folders named <repeats>_<caption>, e.g. %s",
			strings.Join(opt.TrainRoots, ", "), filepath.Join(opt.TrainRoots[0], "10_sks dog"))
	}
	if opt.Strict && len(res.Problems) > 0 {
		return res, fmt.Errorf("%d folder(s) or file(s) skipped, not allowed with --strict; first: %s", len(res.Problems), res.Problems[0])
	}
	return res, nil
}

// listConcepts lists the concept folders of root, sorted by name. seen
// holds the real paths of folders already listed in this set (train or reg),
// so the same folder given twice is used once.
func listConcepts(root string, reg bool, res *Result, seen map[string]bool) ([]*Folder, error) {
	kind := "train"
	if reg {
		kind = "regularization"
	}
	st, err := statFile(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s folder %s does not exist", kind, root)
		}
		return nil, fmt.Errorf("%s folder %s: %w", kind, root, unwrapPath(err))
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s folder %s is not a directory (give the parent of the concept folders)", kind, root)
	}
	entries, err := readDir(root)
	if err != nil {
		return nil, fmt.Errorf("%s folder %s: cannot list it: %w", kind, root, unwrapPath(err))
	}
	var out []*Folder
	loose := 0
	for _, e := range entries {
		p := filepath.Join(root, e.Name())
		st, err := statFile(p) // follows symlinks
		if err != nil {
			res.Problems = append(res.Problems, Problem{p, fmt.Errorf("cannot read it: %w", unwrapPath(err))})
			continue
		}
		if !st.IsDir() {
			if ok, _ := imageExt(e.Name()); ok {
				loose++
			}
			continue
		}
		repeats, caption, err := ParseFolderName(e.Name())
		if err != nil {
			res.Problems = append(res.Problems, Problem{p, fmt.Errorf("folder skipped: %w", err)})
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			res.Problems = append(res.Problems, Problem{p, fmt.Errorf("cannot resolve it: %w", unwrapPath(err))})
			continue
		}
		if abs, err := filepath.Abs(real); err == nil {
			real = abs
		}
		if seen[real] {
			continue
		}
		seen[real] = true
		out = append(out, &Folder{Path: p, Name: e.Name(), IsReg: reg, Repeats: repeats, Caption: caption})
	}
	if loose > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%s: %d image(s) directly in the %s folder are ignored (only images inside <repeats>_<caption> sub-folders are used)", root, loose, kind))
	}
	return out, nil
}

// listImages lists the image files of a concept folder (not recursive),
// sorted by path.
func listImages(f *Folder, res *Result) []string {
	entries, err := readDir(f.Path)
	if err != nil {
		res.Problems = append(res.Problems, Problem{f.Path, fmt.Errorf("cannot list folder: %w", unwrapPath(err))})
		return nil
	}
	var files, mixed, unsupported []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") { // kohya's glob skips hidden files
			continue
		}
		ext := strings.ToLower(filepath.Ext(name))
		if ext == ".avif" || ext == ".jxl" {
			unsupported = append(unsupported, name)
			continue
		}
		isImg, kohyaFinds := imageExt(name)
		if !isImg {
			continue
		}
		p := filepath.Join(f.Path, name)
		if e.IsDir() {
			continue // a sub-folder named like an image; kohya's glob would match, then fail to open it
		}
		if !kohyaFinds {
			mixed = append(mixed, name)
		}
		switch ext {
		case ".jpg", ".jpeg", ".png", ".webp":
			f.GUIFiles++
		}
		f.Found++
		files = append(files, p)
	}
	sort.Strings(files) // already sorted by os.ReadDir; kohya sorts full paths
	if len(mixed) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%s: %s: mixed-case extension(s); loco uses them but kohya sd-scripts does not find them (it only matches all-lower or all-upper case)", f.Path, list(mixed)))
	}
	if len(unsupported) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%s: %s: AVIF and JPEG XL are not supported; skipped", f.Path, list(unsupported)))
	}
	return files
}

// readImage reads one image file: bytes, sha256, header, caption.
func readImage(path string, f *Folder, opt Options, buf []byte) (*manifest.Record, []byte, error) {
	fh, err := openFile(path)
	if err != nil {
		return nil, buf, fmt.Errorf("cannot read it: %w", unwrapPath(err))
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, buf, fmt.Errorf("cannot read it: %w", unwrapPath(err))
	}
	if !st.Mode().IsRegular() {
		return nil, buf, errors.New("not a regular file")
	}
	// Read the whole file once (with room to notice growth), hash it, and
	// probe the header from memory.
	n := int(st.Size())
	if cap(buf) < n+1 {
		buf = make([]byte, n+1, n+n/4+1)
	}
	buf = buf[:n+1]
	m, err := io.ReadFull(fh, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, buf, fmt.Errorf("cannot read it: %w", unwrapPath(err))
	}
	if m != n {
		return nil, buf, fmt.Errorf("file changed size while being read (%d bytes, then %d)", n, m)
	}
	b := buf[:n]
	sum := sha256.Sum256(b)
	info, err := imageio.Probe(b, opt.MaxPixels)
	if err != nil {
		return nil, buf, err
	}
	ow, oh := info.OrientedSize()
	trigger, class := SplitTrigger(f.Caption)
	r := &manifest.Record{
		Schema: manifest.SchemaVersion,
		Path:   path, Size: int64(n), SHA256: hex.EncodeToString(sum[:]), Format: info.Format,
		Width: info.Width, Height: info.Height, ExifOrientation: info.Orientation,
		OrientedWidth: ow, OrientedHeight: oh,
		Concept: f.Name, Repeats: f.Repeats, Trigger: trigger, Class: class,
		IsReg: f.IsReg,
	}
	caption, file, found, err := findCaption(path, opt.CaptionExtension, opt.AllCaptionLines)
	if err != nil {
		return nil, buf, err
	}
	if found {
		r.Caption, r.CaptionSrc, r.CaptionFile = caption, manifest.CaptionFromFile, file
	} else {
		r.Caption, r.CaptionSrc = f.Caption, manifest.CaptionFromFolder
	}
	return r, buf, nil
}

// summarise fills the totals, balances the reg images and adds notes about
// captions and empty folders.
func summarise(res *Result, captionExt string) {
	var regRecs []*manifest.Record
	for _, r := range res.Records {
		if r.IsReg {
			res.RegImages++
			res.RegRaw += r.Repeats
			regRecs = append(regRecs, r)
		} else {
			res.TrainImages++
			res.T += r.Repeats
		}
	}
	for _, f := range res.Folders {
		if !f.IsReg {
			res.GUITrain += f.Repeats * f.GUIFiles
		}
		if f.Images == 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: no usable images in this folder", f.Path))
			continue
		}
		if n := len(f.NoCaptionFile); n > 0 && n < f.Images {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %d of %d images have no %s file and use the folder caption %q: %s", f.Path, n, f.Images, captionExt, f.Caption, list(f.NoCaptionFile)))
		}
		if f.Caption == "" && len(f.NoCaptionFile) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: the folder name gives an empty caption and %d image(s) have no %s file: they train with an empty caption", f.Path, len(f.NoCaptionFile), captionExt))
		}
	}
	repeats := make([]int, len(regRecs))
	for i, r := range regRecs {
		repeats[i] = r.Repeats
	}
	bal := BalanceReg(repeats, res.T)
	byFolder := map[string]*Folder{}
	for _, f := range res.Folders {
		byFolder[f.Path] = f
	}
	for i, r := range regRecs {
		n := bal[i]
		r.RegRepeats = &n
		res.RegBalanced += n
		if f := byFolder[filepath.Dir(r.Path)]; f != nil {
			f.RegSamples += n
			if n > 0 {
				f.RegUsed++
			}
		}
	}
	if len(regRecs) > 0 && res.RegRaw > res.T {
		res.Notes = append(res.Notes, fmt.Sprintf("%d regularization samples (images × repeats) for %d train samples: only the first ones are used (kohya balances reg samples to the train samples)", res.RegRaw, res.T))
	}
}

// BalanceReg gives each reg image, in order, its repeats per epoch after
// kohya's balancing against t train samples (dataset.md §6): a first pass
// registers images with their folder repeats until the running total
// reaches t (the image that crosses t is included, so the total can exceed
// t by up to repeats−1); if the list runs out first, further passes add 1
// to each image in turn until the total reaches t. Images never reached
// get 0. With t = 0 no reg image is used.
func BalanceReg(repeats []int, t int) []int {
	out := make([]int, len(repeats))
	if len(repeats) == 0 {
		return out
	}
	n := 0
	for i, r := range repeats {
		if n >= t {
			return out
		}
		out[i] = r
		n += r
	}
	// Later passes: the rest is spread one by one; do whole rounds at once.
	if n < t {
		k := len(repeats)
		rounds, rest := (t-n)/k, (t-n)%k
		for i := range out {
			out[i] += rounds
			if i < rest {
				out[i]++
			}
		}
	}
	return out
}

// unwrapPath drops the *PathError wrapper, whose path the caller already
// names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// list names up to 5 items and counts the rest, as kohya does for images
// without captions.
func list(names []string) string {
	if len(names) <= 5 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:5], ", "), len(names)-5)
}
