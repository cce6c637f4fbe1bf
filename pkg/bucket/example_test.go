package bucket_test

import (
	"fmt"

	"loco/pkg/bucket"
)

func ExampleBucketer_Assign() {
	b, _, err := bucket.New(bucket.Params{Resolution: [2]int{512, 512}, MinReso: 256, MaxReso: 1024, Steps: 64})
	if err != nil {
		panic(err)
	}
	a, _ := b.Assign(1920, 1080)
	fmt.Println(a.Bucket, a.Resized, a.Crop, bucket.FilterName(bucket.Size{W: 1920, H: 1080}, a.Resized))
	// Output: 640x384 683x384 [21 0 661 384] area
}
