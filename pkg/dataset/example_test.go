package dataset_test

import (
	"fmt"

	"loco/pkg/dataset"
)

func ExampleParseFolderName() {
	repeats, caption, err := dataset.ParseFolderName("30_pralyco woman")
	fmt.Println(repeats, caption, err)
	_, _, err = dataset.ParseFolderName("pralyco")
	fmt.Println(err != nil)
	// Output:
	// 30 pralyco woman <nil>
	// true
}

func ExampleBalanceReg() {
	// 20 train images × 30 repeats = 600 samples; 40 reg images with
	// repeats 1 are each used 15 times per epoch.
	r := dataset.BalanceReg(make40(), 600)
	fmt.Println(len(r), r[0], r[39])
	// Output: 40 15 15
}

func make40() []int {
	r := make([]int, 40)
	for i := range r {
		r[i] = 1
	}
	return r
}
