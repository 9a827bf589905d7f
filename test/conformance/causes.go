package conformance

// causes are the argued causes of specs that do not pass, matched by a part
// of the spec's name (first match wins). Each says whether it is a missing
// feature, an image not buildable here, or not applicable to a virtual
// kubelet, and why, in one line.
var causes = []struct{ spec, cause string }{}
