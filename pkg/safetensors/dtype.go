package safetensors

// DType is a tensor element type, spelled as in the file ("F32", "BF16" …).
type DType string

// The element types this package knows. Every one can be read raw and
// written; ReadFloat32 converts F32, F16, BF16 and F64, ReadInt64 the
// integer types and BOOL.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E5M2 DType = "F8_E5M2"
	F8E4M3 DType = "F8_E4M3"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
)

// dtypeOrder lists the known dtypes in the order of the reference
// implementation's Dtype enum; the writer sorts tensors by descending
// position in it (U64, I64, F64, F32, …), then by name.
var dtypeOrder = []DType{BOOL, U8, I8, F8E5M2, F8E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64}

// Size returns the size of one element in bytes, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8E5M2, F8E4M3:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}

// rank is d's position in dtypeOrder, -1 if unknown.
func (d DType) rank() int {
	for i, x := range dtypeOrder {
		if x == d {
			return i
		}
	}
	return -1
}
