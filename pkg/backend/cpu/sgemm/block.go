package sgemm

import (
	"sync"
	"unsafe"
)

// gemmSerial is the blocked algorithm on the calling goroutine:
//
//	for jc over N in steps of nc:        B block k×nc, packed once (L3)
//	  pack op(B)[:, jc:jc+nc] as ceil(k/kc) slices of kc×nc
//	  for ic over M in steps of mc:
//	    for pc over K in steps of kc:    A block mc×kc, packed (L2)
//	      pack op(A)[ic:ic+mc, pc:pc+kc]
//	      macroKernel: every mr×nr tile of C[ic:, jc:] by the micro-kernel,
//	      the kc×nr B micro-panel staying in L1 while the A panels stream by.
//
// Keeping pc inside ic keeps the mc×nc block of C in L2 across the K slices
// and reads A one band of rows at a time (few pages, so few TLB misses).
// nc is chosen so the packed B block stays near bBlockBytes.
// C gets beta on the first pc step and accumulates (beta 1) on the others.
// alpha != 0 and k > 0 are assumed (Gemm handles the other cases).
func gemmSerial(kern *kernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	mr, nr := kern.mr, kern.nr
	mc0 := max(mcBlock/mr, 1) * mr
	// Split k into equal steps no deeper than kcBlock, so that k = kcBlock+1
	// gives two steps of about half depth rather than a full one and a sliver.
	ksteps := (k + kcBlock - 1) / kcBlock
	kc0 := (k + ksteps - 1) / ksteps
	nc0 := max(min(ncBlock, bBlockBytes/4/k)/nr, 1) * nr
	mcCap := min(mc0, (m+mr-1)/mr*mr)
	ncCap := min(nc0, (n+nr-1)/nr*nr)

	if useDot(kern, transB, m) {
		gemmDot(kern, transA, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if directA(kern, m, kc0, ncCap) {
		gemmDirectA(kern, transA, transB, m, n, k, kc0, nc0, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}

	buf := getBuffers(mcCap*kc0, k*ncCap, mr*nr)
	defer bufPool.Put(buf)

	for jc := 0; jc < n; jc += nc0 {
		nc := min(nc0, n-jc)
		ncR := (nc + nr - 1) / nr * nr
		for pc := 0; pc < k; pc += kc0 {
			packB(kern.asm, transB, b, ldb, pc, jc, min(kc0, k-pc), nc, nr, buf.b[pc*ncR:])
		}
		for ic := 0; ic < m; ic += mc0 {
			mc := min(mc0, m-ic)
			for pc := 0; pc < k; pc += kc0 {
				kc := min(kc0, k-pc)
				betaStep := beta
				if pc > 0 {
					betaStep = 1
				}
				packA(kern.asm, transA, a, lda, ic, pc, mc, kc, mr, buf.a)
				macroKernel(kern, mc, nc, kc, alpha, buf.a, buf.b[pc*ncR:], betaStep, c[ic*ldc+jc:], ldc, buf.tmp)
			}
		}
	}
}

// directMaxBBytes bounds the packed B̃ slice (kc×nc) for which A is read in
// place (gemmDirectA): that slice is walked once per mr rows of A, so it
// must stay in L2. A variable so that tests can force either path.
var directMaxBBytes = 512 << 10

// directA reports whether gemmSerial reads A in place instead of packing
// it: the kernel has the unpacked-A variants, there is at least one full
// row tile, and one kc×nc slice of B̃ fits the L2 budget.
func directA(kern *kernel, m, kc, nc int) bool {
	return kern.fnRowsA != nil && m >= kern.mr && 4*kc*nc <= directMaxBBytes
}

// gemmDirectA is gemmSerial without packing A: B is packed as usual; for
// each kc slice, every full mr-row tile of op(A) is handed to the
// micro-kernel where it lies (it stays in L1 while the nr-column panels of
// B̃ stream from L2), and only the last m mod mr rows are packed. At small
// shapes packing A costs as much as the product; here it is skipped.
func gemmDirectA(kern *kernel, transA, transB bool, m, n, k, kc0, nc0 int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	mr, nr := kern.mr, kern.nr
	ncCap := min(nc0, (n+nr-1)/nr*nr)
	mFull := m / mr * mr
	buf := getBuffers(mr*kc0, k*ncCap, mr*nr)
	defer bufPool.Put(buf)
	fnA := kern.fnRowsA
	if transA {
		fnA = kern.fnColsA
	}
	for jc := 0; jc < n; jc += nc0 {
		nc := min(nc0, n-jc)
		ncR := (nc + nr - 1) / nr * nr
		for pc := 0; pc < k; pc += kc0 {
			packB(kern.asm, transB, b, ldb, pc, jc, min(kc0, k-pc), nc, nr, buf.b[pc*ncR:])
		}
		for pc := 0; pc < k; pc += kc0 {
			kc := min(kc0, k-pc)
			betaStep := beta
			if pc > 0 {
				betaStep = 1
			}
			loadC := 1
			if betaStep == 0 {
				loadC = 0
			}
			pb := buf.b[pc*ncR:]
			for ir := 0; ir < mFull; ir += mr {
				var ap *float32
				if transA {
					ap = &a[pc*lda+ir]
				} else {
					ap = &a[ir*lda+pc]
				}
				crow := c[ir*ldc+jc:]
				for jr := 0; jr < nc; jr += nr {
					nw := min(nr, nc-jr)
					bp := &pb[jr*kc]
					if nw == nr {
						fnA(kc, ap, bp, &crow[jr], ldc, alpha, betaStep, loadC, lda)
						continue
					}
					fnA(kc, ap, bp, &buf.tmp[0], nr, 1, 0, 0, lda)
					mergeTile(mr, nw, nr, alpha, betaStep, buf.tmp, crow[jr:], ldc)
				}
			}
			if mFull < m {
				packA(kern.asm, transA, a, lda, mFull, pc, m-mFull, kc, mr, buf.a)
				macroKernel(kern, m-mFull, nc, kc, alpha, buf.a, pb, betaStep, c[mFull*ldc+jc:], ldc, buf.tmp)
			}
		}
	}
}

// dotMaxM is the largest m that gemmDot handles (0 turns it off); a
// variable so that tests can force either path.
var dotMaxM = 8

// useDot reports whether a product goes to gemmDot: op(B) = Bᵀ (its
// columns are contiguous rows of B), few rows, and a dot kernel.
func useDot(kern *kernel, transB bool, m int) bool {
	return kern.dot4 != nil && transB && m <= dotMaxM
}

// gemmDot computes C = alpha*op(A)*Bᵀ + beta*C for a product with few
// rows (attention's transposed P·V and dQ with 4–16-wide heads) as m×n dot
// products of length k: op(A) is copied into m (rounded up to 4) contiguous
// zero-padded rows, and each row of B is read once, in place, against four
// rows of it at a time. With m this small the micro-kernel would run
// mostly empty tiles after transposing all of B into packed panels.
func gemmDot(kern *kernel, transA bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	mp := (m + 3) &^ 3
	buf := getBuffers(mp*k, 0, 0)
	defer bufPool.Put(buf)
	pa := buf.a
	for i := 0; i < m; i++ {
		row := pa[i*k : i*k+k]
		if transA {
			for p := range row {
				row[p] = a[p*lda+i]
			}
		} else {
			copy(row, a[i*lda:i*lda+k])
		}
	}
	clear(pa[m*k:])
	var out [4]float32
	for j := 0; j < n; j++ {
		bj := &b[j*ldb]
		_ = b[j*ldb+k-1]
		for r0 := 0; r0 < m; r0 += 4 {
			kern.dot4(k, &pa[r0*k], k, bj, &out)
			for r := 0; r < min(4, m-r0); r++ {
				ci := &c[(r0+r)*ldc+j]
				if beta == 0 {
					*ci = alpha * out[r]
				} else {
					*ci = alpha*out[r] + beta**ci
				}
			}
		}
	}
}

// mergeTile writes the first rows×cols of an edge tile computed into tmp
// (row stride nr, not yet scaled) into C: C = alpha*tmp + beta*C, without
// reading C when beta == 0.
func mergeTile(rows, cols, nr int, alpha, beta float32, tmp, c []float32, ldc int) {
	for r := 0; r < rows; r++ {
		crow := c[r*ldc : r*ldc+cols]
		trow := tmp[r*nr : r*nr+cols]
		if beta == 0 {
			for j, t := range trow {
				crow[j] = alpha * t
			}
		} else {
			for j, t := range trow {
				crow[j] = alpha*t + beta*crow[j]
			}
		}
	}
}

// macroKernel computes C[0:mc, 0:nc] = alpha*Ã·B̃ + beta*C from packed
// panels. Full tiles go straight to C; edge tiles are computed into tmp
// (mr×nr, packed zero padding makes the extra lanes harmless) and merged.
func macroKernel(kern *kernel, mc, nc, kc int, alpha float32, pa, pb []float32, beta float32, c []float32, ldc int, tmp []float32) {
	mr, nr := kern.mr, kern.nr
	loadC := 1
	if beta == 0 {
		loadC = 0
	}
	for jr := 0; jr < nc; jr += nr {
		nw := min(nr, nc-jr)
		bp := &pb[jr*kc]
		for ir := 0; ir < mc; ir += mr {
			mh := min(mr, mc-ir)
			ap := &pa[ir*kc]
			if mh == mr && nw == nr {
				kern.fn(kc, ap, bp, &c[ir*ldc+jr], ldc, alpha, beta, loadC)
				continue
			}
			kern.fn(kc, ap, bp, &tmp[0], nr, 1, 0, 0)
			mergeTile(mh, nw, nr, alpha, beta, tmp, c[ir*ldc+jr:], ldc)
		}
	}
}

// packA copies op(A)[i0:i0+mc, p0:p0+kc] into dst as ceil(mc/mr) panels.
// Panel q holds rows q*mr … q*mr+mr-1, column by column: element (r, p) of
// the panel is at dst[q*mr*kc + p*mr + r]. Rows past mc are zero.
func packA(asm, transA bool, a []float32, lda, i0, p0, mc, kc, mr int, dst []float32) {
	for ip := 0; ip < mc; ip += mr {
		rows := min(mr, mc-ip)
		d := dst[ip*kc : ip*kc+mr*kc]
		if transA {
			// op(A)[i][p] = a[p*lda+i]: each column of the panel is contiguous.
			for p := 0; p < kc; p++ {
				src := a[(p0+p)*lda+i0+ip:]
				dd := d[p*mr : p*mr+mr]
				copy(dd[:rows], src[:rows])
				clear(dd[rows:])
			}
			continue
		}
		// op(A)[i][p] = a[i*lda+p]: each row of the panel is contiguous.
		if rows < mr {
			clear(d)
		}
		packStrided(asm, d, mr, a[(i0+ip)*lda+p0:], lda, rows, kc)
	}
}

// packB copies op(B)[p0:p0+kc, j0:j0+nc] into dst as ceil(nc/nr) panels.
// Panel q holds columns q*nr … q*nr+nr-1, row by row: element (p, j) of the
// panel is at dst[q*nr*kc + p*nr + j]. Columns past nc are zero.
func packB(asm, transB bool, b []float32, ldb, p0, j0, kc, nc, nr int, dst []float32) {
	for jp := 0; jp < nc; jp += nr {
		cols := min(nr, nc-jp)
		d := dst[jp*kc : jp*kc+nr*kc]
		if !transB {
			// op(B)[p][j] = b[p*ldb+j]: each row of the panel is contiguous.
			for p := 0; p < kc; p++ {
				src := b[(p0+p)*ldb+j0+jp:]
				dd := d[p*nr : p*nr+nr]
				copy(dd[:cols], src[:cols])
				clear(dd[cols:])
			}
			continue
		}
		// op(B)[p][j] = b[j*ldb+p]: each column of the panel is contiguous.
		if cols < nr {
			clear(d)
		}
		packStrided(asm, d, nr, b[(j0+jp)*ldb+p0:], ldb, cols, kc)
	}
}

// packStrided writes rows rows of src (stride ld) as the interleaved
// columns of a panel: dst[p*stride + r] = src[r*ld + p] for p < kc.
// Four rows are read together: four sequential streams keep the hardware
// prefetchers busy without the cache-set conflicts that reading all rows
// of a panel at once causes when ld is a multiple of 1024.
//
// With asm set, the AVX-512 gather version is used where available.
func packStrided(asm bool, dst []float32, stride int, src []float32, ld, rows, kc int) {
	if asm && packStridedAsm(dst, stride, src, ld, rows, kc) {
		return
	}
	_ = dst[(kc-1)*stride+rows-1]
	r := 0
	for ; r+4 <= rows; r += 4 {
		r0 := src[r*ld : r*ld+kc]
		r1 := src[(r+1)*ld : (r+1)*ld+kc]
		r2 := src[(r+2)*ld : (r+2)*ld+kc]
		r3 := src[(r+3)*ld : (r+3)*ld+kc]
		for p := range r0 {
			d := dst[p*stride+r : p*stride+r+4 : p*stride+r+4]
			d[0], d[1], d[2], d[3] = r0[p], r1[p], r2[p], r3[p]
		}
	}
	for ; r < rows; r++ {
		row := src[r*ld : r*ld+kc]
		for p, v := range row {
			dst[p*stride+r] = v
		}
	}
}

// buffers are one worker's packing space, recycled through bufPool.
type buffers struct {
	a, b, tmp          []float32
	rawA, rawB, rawTmp []float32
}

var bufPool sync.Pool

func getBuffers(na, nb, nt int) *buffers {
	bf, _ := bufPool.Get().(*buffers)
	if bf == nil {
		bf = new(buffers)
	}
	bf.a = aligned(&bf.rawA, na)
	bf.b = aligned(&bf.rawB, nb)
	bf.tmp = aligned(&bf.rawTmp, nt)
	return bf
}

// aligned returns n elements of *raw starting on a 64-byte boundary,
// growing *raw when it is too small.
func aligned(raw *[]float32, n int) []float32 {
	if cap(*raw) < n+16 {
		*raw = make([]float32, n+16)
	}
	r := (*raw)[:cap(*raw)]
	off := int((64 - uintptr(unsafe.Pointer(&r[0]))%64) % 64 / 4)
	return r[off : off+n]
}
