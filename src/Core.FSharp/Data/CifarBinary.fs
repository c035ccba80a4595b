namespace Optimizers.Data

open System.IO

/// Reader of the CIFAR-10 binary format (cifar-10-binary.tar.gz: data_batch_1.bin ..
/// data_batch_5.bin, test_batch.bin): fixed records of 1 label byte (0..9) followed by
/// 3 x 32 x 32 = 3072 pixel bytes, the red, green and blue planes in turn, each row-major.
/// There is no header, so a file is valid when it is a whole, non-zero number of records and
/// every label is 0..9; anything else raises an InvalidDataException naming the file.
module CifarBinary =

    /// Bytes of one record: a label and a 3 x 32 x 32 image.
    [<Literal>]
    let RecordBytes = 3073

    /// Labels (one byte each) and pixels (3072 bytes per image, channel-major) of a file.
    let read (path: string) : byte[] * byte[] =
        let b = Idx.readBytes path // accepts a gzip-compressed copy too
        let fail (problem: string) : 'a = raise (InvalidDataException($"{path}: {problem}"))
        if b.Length = 0 then fail "empty file; a CIFAR-10 binary file holds records of 3073 bytes"
        if b.Length % RecordBytes <> 0 then
            fail $"wrong size: {b.Length} bytes is not a whole number of 3073-byte records ({b.Length / RecordBytes} records and {b.Length % RecordBytes} bytes left over); the file is truncated or not CIFAR-10 binary"
        let n = b.Length / RecordBytes
        let labels = Array.zeroCreate<byte> n
        let pixels = Array.zeroCreate<byte> (n * 3072)
        for i in 0 .. n - 1 do
            let label = b[i * RecordBytes]
            if label > 9uy then
                fail $"record {i} has label {label}; CIFAR-10 labels are 0..9 (is this the CIFAR-100 format or a corrupt file?)"
            labels[i] <- label
            System.Buffer.BlockCopy(b, i * RecordBytes + 1, pixels, i * 3072, 3072)
        labels, pixels

    /// Write records (for tests and small synthetic data sets).
    let write (path: string) (labels: byte[]) (pixels: byte[]) =
        if pixels.Length <> labels.Length * 3072 then invalidArg "pixels" "CifarBinary.write: 3072 pixel bytes per label"
        use f = File.Create path
        for i in 0 .. labels.Length - 1 do
            f.WriteByte labels[i]
            f.Write(pixels, i * 3072, 3072)
