package lts

// Bit fields of big-endian byte strings. Bit position 0 is the most
// significant bit of b[0]. The callers guarantee pos+size <= 8*len(b) and
// size <= 64.

// getBits returns the size-bit field at pos.
func getBits(b []byte, pos, size int) uint64 {
	var v uint64
	end := pos + size
	for pos < end {
		inByte := pos & 7
		n := 8 - inByte
		if n > end-pos {
			n = end - pos
		}
		chunk := (uint64(b[pos>>3]) >> uint(8-inByte-n)) & (1<<uint(n) - 1)
		v = v<<uint(n) | chunk
		pos += n
	}
	return v
}

// setBits stores the low size bits of v in the field at pos.
func setBits(b []byte, pos, size int, v uint64) {
	end := pos + size
	for pos < end {
		inByte := pos & 7
		n := 8 - inByte
		if n > end-pos {
			n = end - pos
		}
		shift := uint(8 - inByte - n)
		mask := byte((1<<uint(n) - 1) << shift)
		chunk := byte((v>>uint(end-pos-n))&(1<<uint(n)-1)) << shift
		b[pos>>3] = b[pos>>3]&^mask | chunk
		pos += n
	}
}

// incrementBytes adds one to the big-endian number b in place and reports
// false (leaving b all zero) if it overflowed.
func incrementBytes(b []byte) bool {
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return true
		}
	}
	return false
}

// lowMask returns a mask of the low n bits, n in [0, 64].
func lowMask(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<uint(n) - 1
}
