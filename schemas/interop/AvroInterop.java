// Cross-check with Apache Avro for Java, the reference implementation. For each pair of
// arguments (a self-contained schema file, a single-object encoded message) prints one JSON
// line: Java's Parsing Canonical Form and CRC-64-AVRO fingerprint of the schema, the message
// decoded with Java's BinaryMessageDecoder (which checks the C3 01 header and fingerprint),
// and Java's own single-object encoding of that record (identical bytes unless a map's
// entries come out of Java's HashMap in another order).
// Run: java -cp '.cache/avro-java/*' schemas/interop/AvroInterop.java SCHEMA BIN [SCHEMA BIN ...]
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Arrays;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

public class AvroInterop {
  public static void main(String[] args) throws Exception {
    for (int i = 0; i + 1 < args.length; i += 2) {
      Schema schema = new Schema.Parser().parse(new File(args[i]));
      byte[] bytes = Files.readAllBytes(Paths.get(args[i + 1]));
      GenericRecord record = new BinaryMessageDecoder<GenericRecord>(GenericData.get(), schema).decode(bytes);
      ByteArrayOutputStream again = new ByteArrayOutputStream();
      new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema).encode(record, again);
      System.out.println("{\"schema\":" + quote(schema.getFullName())
          + ",\"canonical\":" + quote(SchemaNormalization.toParsingForm(schema))
          + ",\"fingerprint\":\"" + SchemaNormalization.parsingFingerprint64(schema) + "\""
          + ",\"reencodedIdentical\":" + Arrays.equals(bytes, again.toByteArray())
          + ",\"reencoded\":\"" + hex(again.toByteArray()) + "\""
          + ",\"record\":" + quote(record.toString()) + "}");
    }
  }

  private static String hex(byte[] bytes) {
    StringBuilder out = new StringBuilder();
    for (byte b : bytes) out.append(String.format("%02x", b));
    return out.toString();
  }

  private static String quote(String s) {
    StringBuilder out = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\') out.append('\\').append(c);
      else if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
      else out.append(c);
    }
    return out.append('"').toString();
  }
}
