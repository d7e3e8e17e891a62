// A stand-in for the module that `wit-bindgen go` output imports: see doc.go.
module go.bytecodealliance.org/pkg

go 1.27
