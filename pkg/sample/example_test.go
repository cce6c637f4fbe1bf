package sample_test

import (
	"fmt"

	"loco/pkg/sample"
	"loco/pkg/train"
)

// A prompt line with kohya's inline options.
func ExampleParseLine() {
	p, err := sample.ParseLine("pralyco, photo of a woman --n lowres --w 512 --h 768 --s 20 --l 6 --d 42", "prompts.txt:1")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q %q %dx%d steps %d scale %g seed %d\n", p.Prompt, p.Negative, p.Width, p.Height, p.Steps, p.Scale, p.Seed)
	_, err = sample.ParseLine("a cat --w 500", "prompts.txt:2")
	fmt.Println(err)
	// Output:
	// "pralyco, photo of a woman" "lowres" 512x768 steps 20 scale 6 seed 42
	// prompts.txt:2: width 500 is not a multiple of 8 of at least 64 (in "a cat --w 500")
}

// The timesteps and σ of kohya's Euler ancestral for 5 steps.
func ExampleConfig_NewPlan() {
	plan, err := sample.EulerAncestralKohya().NewPlan(5, train.SD1())
	if err != nil {
		panic(err)
	}
	fmt.Printf("t %.2f\nσ %.4f\ninit %.4f\n", plan.Timesteps, plan.Sigmas, plan.InitNoiseSigma)
	// Output:
	// t [999.00 749.25 499.50 249.75 0.00]
	// σ [14.6146 4.0861 1.6156 0.6952 0.0292 0.0000]
	// init 14.6146
}
