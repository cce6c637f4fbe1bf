package cpu

import "loco/pkg/tensor"

// Convolution is lowered to GEMM. For image n, with CRS = C*R*S and PQ = P*Q:
//
//	forward:         y_n[K, PQ]   = w[K, CRS] · col(x_n)[CRS, PQ]
//	backward data:   dcol[CRS,PQ] = wᵀ[CRS, K] · dy_n[K, PQ];  dx_n += col2im(dcol)
//	backward filter: dw[K, CRS]  += dy_n[K, PQ] · col(x_n)ᵀ[PQ, CRS]
//
// col(x) (im2col) is built for a band of output rows at a time, so its
// scratch stays under colCap elements whatever the image size. A 1×1,
// stride-1, unpadded convolution is a plain GEMM on x itself.

// colCap bounds the im2col scratch, in elements (16 MiB).
var colCap = 1 << 22

// convCheck validates p and the buffer lengths, returning P and Q.
func convCheck(op string, p tensor.ConvParams, x, w, y []float32, xName, yName string) (int, int) {
	checkDims(op, p.N, p.C, p.H, p.W, p.K, p.R, p.S, p.StrideH, p.StrideW)
	if p.PadH < 0 || p.PadW < 0 {
		tensor.Errorf(op, "negative padding %d×%d", p.PadH, p.PadW)
	}
	if p.H+2*p.PadH < p.R || p.W+2*p.PadW < p.S {
		tensor.Errorf(op, "kernel %d×%d larger than padded input %d×%d", p.R, p.S, p.H+2*p.PadH, p.W+2*p.PadW)
	}
	P, Q := p.P(), p.Q()
	checkShape(op, xName, len(x), p.N, p.C, p.H, p.W)
	if w != nil {
		checkShape(op, "w", len(w), p.K, p.C, p.R, p.S)
	}
	checkShape(op, yName, len(y), p.N, p.K, P, Q)
	return P, Q
}

func isPointwise(p tensor.ConvParams) bool {
	return p.R == 1 && p.S == 1 && p.StrideH == 1 && p.StrideW == 1 && p.PadH == 0 && p.PadW == 0
}

// bands splits P output rows into bands whose im2col fits colCap; it
// returns the rows per band.
func bands(p tensor.ConvParams, P, Q int) int {
	crs := p.C * p.R * p.S
	total := crs * P * Q
	nb := (total + colCap - 1) / colCap
	return (P + nb - 1) / nb
}

// Conv2D computes y = conv(x, w) + bias.
func (b *Backend) Conv2D(y, x, w, bias tensor.Storage, p tensor.ConvParams) {
	const op = "conv2d"
	ys, xs, ws, bs := f32(op, y), f32(op, x), f32(op, w), f32(op, bias)
	if ws == nil {
		tensor.Errorf(op, "nil weight")
	}
	P, Q := convCheck(op, p, xs, ws, ys, "x", "y")
	checkOpt(op, "bias", bs, p.K)
	crs, pq, hw := p.C*p.R*p.S, P*Q, p.H*p.W
	for n := 0; n < p.N; n++ {
		xn, yn := xs[n*p.C*hw:][:p.C*hw], ys[n*p.K*pq:][:p.K*pq]
		if isPointwise(p) {
			gemm(false, false, p.K, hw, p.C, 1, ws, p.C, xn, hw, 0, yn, hw)
		} else {
			rows := bands(p, P, Q)
			col := b.get(crs * rows * Q)
			for p0 := 0; p0 < P; p0 += rows {
				np := min(rows, P-p0)
				im2col(col, xn, p, p0, np, P, Q)
				gemm(false, false, p.K, np*Q, crs, 1, ws, crs, col, np*Q, 0, yn[p0*Q:], pq)
			}
			b.put(col)
		}
		if bs != nil {
			parallelFor(p.K, pq, func(lo, hi int) {
				for k := lo; k < hi; k++ {
					row, bk := yn[k*pq:(k+1)*pq], bs[k]
					for i := range row {
						row[i] += bk
					}
				}
			})
		}
	}
}

// Conv2DBackwardData adds the input gradient into dx (writes it, with p.Overwrite).
func (b *Backend) Conv2DBackwardData(dx, dy, w tensor.Storage, p tensor.ConvParams) {
	const op = "conv2d_backward_data"
	dxs, dys, ws := f32(op, dx), f32(op, dy), f32(op, w)
	if dxs == nil {
		return
	}
	if ws == nil {
		tensor.Errorf(op, "nil weight")
	}
	P, Q := convCheck(op, p, dxs, ws, dys, "dx", "dy")
	if p.Overwrite {
		clear(dxs) // the paths below add
	}
	if p.StrideH == 1 && p.StrideW == 1 && p.PadH < p.R && p.PadW < p.S && !isPointwise(p) &&
		(p.K < p.C || p.C*p.K*p.R*p.S*p.H*p.W <= flippedMaxWork) {
		b.convBackwardDataFlipped(dxs, dys, ws, p, P, Q)
		return
	}
	b.convBackwardDataCol2im(dxs, dys, ws, p, P, Q)
}

// convBackwardDataCol2im is the general backward data: per band, a GEMM
// into a CRS×PQ scratch and col2im's scatter-add of it into dx.
func (b *Backend) convBackwardDataCol2im(dxs, dys, ws []float32, p tensor.ConvParams, P, Q int) {
	crs, pq, hw := p.C*p.R*p.S, P*Q, p.H*p.W
	for n := 0; n < p.N; n++ {
		dxn, dyn := dxs[n*p.C*hw:][:p.C*hw], dys[n*p.K*pq:][:p.K*pq]
		if isPointwise(p) {
			gemm(true, false, p.C, hw, p.K, 1, ws, p.C, dyn, hw, 1, dxn, hw)
			continue
		}
		rows := bands(p, P, Q)
		col := b.get(crs * rows * Q)
		for p0 := 0; p0 < P; p0 += rows {
			np := min(rows, P-p0)
			gemm(true, false, crs, np*Q, p.K, 1, ws, crs, dyn[p0*Q:], pq, 0, col, np*Q)
			col2im(dxn, col, p, p0, np, P, Q)
		}
		b.put(col)
	}
}

// flippedMaxWork bounds the C·K·R·S·H·W of a stride-1 backward data that
// takes the flipped path when K ≥ C: above it (SD's 320→320 3×3 at 64×64)
// the transposed-A GEMM and col2im measured ~3 % faster on one thread.
// With K < C (a LoCon down projection) the flipped path always wins: its
// scratch is K·R·S rows instead of C·R·S.
const flippedMaxWork = 1 << 26

// convBackwardDataFlipped is the stride-1 backward data as a forward
// convolution of dy (K channels, P×Q) with the flipped, transposed kernel
// w̃[c, k, r, s] = w[k, c, R−1−r, S−1−s] and padding R−1−PadH, S−1−PadW,
// whose output is H×W: an im2col of dy and one GEMM that adds into dx,
// instead of a GEMM into a CRS×PQ scratch and col2im's scatter-add of it.
func (b *Backend) convBackwardDataFlipped(dxs, dys, ws []float32, p tensor.ConvParams, P, Q int) {
	q := tensor.ConvParams{N: p.N, C: p.K, H: P, W: Q, K: p.C, R: p.R, S: p.S,
		StrideH: 1, StrideW: 1, PadH: p.R - 1 - p.PadH, PadW: p.S - 1 - p.PadW}
	rs, krs, hw, pq := p.R*p.S, p.K*p.R*p.S, p.H*p.W, P*Q
	wt := b.get(p.C * krs)
	parallelFor(p.K, p.C*rs, func(k0, k1 int) {
		for k := k0; k < k1; k++ {
			for c := 0; c < p.C; c++ {
				o, t := (k*p.C+c)*rs, (c*p.K+k)*rs
				if rs == 9 { // 3×3, unrolled: the flip runs on every call
					s, d := ws[o:o+9:o+9], wt[t:t+9:t+9]
					d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8] = s[8], s[7], s[6], s[5], s[4], s[3], s[2], s[1], s[0]
					continue
				}
				src, dst := ws[o:o+rs:o+rs], wt[t:t+rs:t+rs]
				for i, v := range src {
					dst[rs-1-i] = v
				}
			}
		}
	})
	rows := bands(q, p.H, p.W)
	col := b.get(krs * rows * p.W)
	for n := 0; n < p.N; n++ {
		dxn, dyn := dxs[n*p.C*hw:][:p.C*hw], dys[n*p.K*pq:][:p.K*pq]
		for h0 := 0; h0 < p.H; h0 += rows {
			nh := min(rows, p.H-h0)
			im2col(col, dyn, q, h0, nh, p.H, p.W)
			gemm(false, false, p.C, nh*p.W, krs, 1, wt, krs, col, nh*p.W, 1, dxn[h0*p.W:], hw)
		}
	}
	b.put(col)
	b.put(wt)
}

// Conv2DBackwardFilter adds the weight gradient into dw and the bias
// gradient into dbias (either may be nil).
func (b *Backend) Conv2DBackwardFilter(dw, dbias, dy, x tensor.Storage, p tensor.ConvParams) {
	const op = "conv2d_backward_filter"
	dws, dbs, dys, xs := f32(op, dw), f32(op, dbias), f32(op, dy), f32(op, x)
	convCheck(op, p, xs, dws, dys, "x", "dy")
	checkOpt(op, "dbias", dbs, p.K)
	P, Q := p.P(), p.Q()
	crs, pq, hw := p.C*p.R*p.S, P*Q, p.H*p.W
	for n := 0; n < p.N; n++ {
		xn, dyn := xs[n*p.C*hw:][:p.C*hw], dys[n*p.K*pq:][:p.K*pq]
		if dbs != nil {
			for k := 0; k < p.K; k++ {
				dbs[k] += float32(sum(dyn[k*pq : (k+1)*pq]))
			}
		}
		if dws == nil {
			continue
		}
		if isPointwise(p) {
			gemm(false, true, p.K, p.C, hw, 1, dyn, hw, xn, hw, 1, dws, p.C)
			continue
		}
		rows := bands(p, P, Q)
		col := b.get(crs * rows * Q)
		for p0 := 0; p0 < P; p0 += rows {
			np := min(rows, P-p0)
			im2col(col, xn, p, p0, np, P, Q)
			gemm(false, true, p.K, crs, np*Q, 1, dyn[p0*Q:], pq, col, np*Q, 1, dws, crs)
		}
		b.put(col)
	}
}

// validRange returns the output columns [lo, hi) of a row of Q outputs
// whose input column q*stride - pad + s lies inside [0, w).
func validRange(Q, w, stride, pad, s int) (int, int) {
	lo := 0
	if d := pad - s; d > 0 {
		lo = (d + stride - 1) / stride
	}
	hi := 0
	if last := w - 1 + pad - s; last >= 0 {
		hi = min(Q, last/stride+1)
	}
	return min(lo, hi), hi
}

// im2col writes col[(c*R+r)*S+s, i*Q+q] = x[c, (p0+i)*sh-ph+r, q*sw-pw+s]
// (zero outside the image) for the np output rows from p0.
func im2col[T float](col, x []T, p tensor.ConvParams, p0, np, P, Q int) {
	ld := np * Q
	if p.StrideH == 1 && p.StrideW == 1 && Q == p.W {
		im2colSame(col, x, p, p0, np, P, Q)
		return
	}
	parallelFor(p.C, p.R*p.S*ld, func(c0, c1 int) {
		for c := c0; c < c1; c++ {
			xc := x[c*p.H*p.W:][:p.H*p.W]
			for r := 0; r < p.R; r++ {
				for s := 0; s < p.S; s++ {
					row := col[((c*p.R+r)*p.S+s)*ld:][:ld]
					qlo, qhi := validRange(Q, p.W, p.StrideW, p.PadW, s)
					for i := 0; i < np; i++ {
						dst := row[i*Q : (i+1)*Q]
						ih := (p0+i)*p.StrideH - p.PadH + r
						if ih < 0 || ih >= p.H {
							clear(dst)
							continue
						}
						clear(dst[:qlo])
						clear(dst[qhi:])
						src := xc[ih*p.W:][:p.W]
						iw := qlo*p.StrideW - p.PadW + s
						if p.StrideW == 1 {
							copy(dst[qlo:qhi], src[iw:])
						} else {
							for q := qlo; q < qhi; q++ {
								dst[q] = src[iw]
								iw += p.StrideW
							}
						}
					}
				}
			}
		}
	})
}

// im2colSame is im2col for stride 1 with output rows as wide as input
// rows ("same" convolutions, the common case): then the band of one
// (c, r, s) row is one contiguous run of x shifted by (r, s), so it is
// copied in one piece and the columns that fell off the image edge (which
// picked up neighbouring rows' pixels) are zeroed afterwards.
func im2colSame[T float](col, x []T, p tensor.ConvParams, p0, np, P, Q int) {
	ld := np * Q
	w := p.W
	parallelFor(p.C, p.R*p.S*ld, func(c0, c1 int) {
		for c := c0; c < c1; c++ {
			xc := x[c*p.H*w:][:p.H*w]
			for r := 0; r < p.R; r++ {
				// Output rows i whose input row p0+i−PadH+r is inside the image.
				ilo := min(np, max(0, p.PadH-r-p0))
				ihi := max(ilo, min(np, p.H+p.PadH-r-p0))
				for s := 0; s < p.S; s++ {
					row := col[((c*p.R+r)*p.S+s)*ld:][:ld]
					clear(row[:ilo*Q])
					clear(row[ihi*Q:])
					if ihi == ilo {
						continue
					}
					qlo, qhi := validRange(Q, w, 1, p.PadW, s)
					// Element (i, q) of the band reads x[base + i*w + q].
					base := (p0-p.PadH+r)*w - p.PadW + s
					first, last := ilo*Q+qlo, (ihi-1)*Q+qhi // [first, last) of the band
					if first < last {
						copy(row[first:last], xc[base+first:base+last])
					}
					if qlo > 0 || qhi < Q {
						for i := ilo; i < ihi; i++ {
							clear(row[i*Q : i*Q+qlo])
							clear(row[i*Q+qhi : (i+1)*Q])
						}
					}
				}
			}
		}
	})
}

// col2im adds col (laid out as im2col's output for rows p0..p0+np) back
// into dx: the adjoint of im2col.
func col2im[T float](dx, col []T, p tensor.ConvParams, p0, np, P, Q int) {
	ld := np * Q
	parallelFor(p.C, p.R*p.S*ld, func(c0, c1 int) {
		for c := c0; c < c1; c++ {
			dxc := dx[c*p.H*p.W:][:p.H*p.W]
			for r := 0; r < p.R; r++ {
				for s := 0; s < p.S; s++ {
					row := col[((c*p.R+r)*p.S+s)*ld:][:ld]
					qlo, qhi := validRange(Q, p.W, p.StrideW, p.PadW, s)
					for i := 0; i < np; i++ {
						ih := (p0+i)*p.StrideH - p.PadH + r
						if ih < 0 || ih >= p.H {
							continue
						}
						src := row[i*Q : (i+1)*Q]
						dst := dxc[ih*p.W:][:p.W]
						iw := qlo*p.StrideW - p.PadW + s
						if p.StrideW == 1 {
							addTo(dst[iw:iw+qhi-qlo], src[qlo:qhi])
						} else {
							for q := qlo; q < qhi; q++ {
								dst[iw] += src[q]
								iw += p.StrideW
							}
						}
					}
				}
			}
		}
	})
}

func sum[T float](s []T) float64 {
	var acc float64
	for _, v := range s {
		acc += float64(v)
	}
	return acc
}
