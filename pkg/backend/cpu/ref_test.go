package cpu

// gemmRef is the reference product, generic so that tests can run it in
// float64: C = alpha*op(A)*op(B) + beta*C, row-major, beta == 0 does not
// read C. Loops are ordered so that the innermost one walks rows of B and C.
func gemmRef[T float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	for i := 0; i < m; i++ {
		ci := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(ci)
		} else if beta != 1 {
			for j := range ci {
				ci[j] *= beta
			}
		}
		if alpha == 0 {
			continue
		}
		for l := 0; l < k; l++ {
			ail := a[i*lda+l]
			if transA {
				ail = a[l*lda+i]
			}
			ail *= alpha
			if !transB {
				bl := b[l*ldb : l*ldb+n]
				for j := range ci {
					ci[j] += ail * bl[j]
				}
			} else {
				for j := range ci {
					ci[j] += ail * b[j*ldb+l]
				}
			}
		}
	}
}
