// A reader that knows nothing of ktrail: Apache Avro for Java decoding Kafka message values in
// the Confluent wire format (00 | 4-byte big-endian schema id | Avro body), with the writer
// schema fetched by id from a Confluent-compatible registry, as any Confluent deserializer
// does. For each message file prints one JSON line: the id, the schema's full name and the
// record as Java renders it (GenericData's JSON-like toString).
// Run: java -cp '.cache/avro-java/*' schemas/interop/RegistryReader.java REGISTRY_URL FILE [FILE ...]
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.HashMap;
import java.util.Map;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;

public class RegistryReader {
  public static void main(String[] args) throws Exception {
    String registry = args[0].replaceAll("/+$", "");
    HttpClient http = HttpClient.newHttpClient();
    ObjectMapper json = new ObjectMapper();
    Map<Integer, Schema> schemas = new HashMap<>();
    for (int i = 1; i < args.length; i++) {
      byte[] bytes = Files.readAllBytes(Paths.get(args[i]));
      ByteBuffer buf = ByteBuffer.wrap(bytes);
      if (bytes.length < 5 || buf.get() != 0) throw new IllegalArgumentException(args[i] + ": not Confluent framed");
      int id = buf.getInt();
      Schema schema = schemas.get(id);
      if (schema == null) {
        HttpRequest req = HttpRequest.newBuilder(URI.create(registry + "/schemas/ids/" + id))
            .header("Accept", "application/vnd.schemaregistry.v1+json").build();
        HttpResponse<String> res = http.send(req, HttpResponse.BodyHandlers.ofString());
        if (res.statusCode() != 200) throw new IllegalStateException("registry answered " + res.statusCode() + " for id " + id);
        schema = new Schema.Parser().parse(json.readTree(res.body()).get("schema").asText());
        schemas.put(id, schema);
      }
      GenericRecord record = new GenericDatumReader<GenericRecord>(schema)
          .read(null, DecoderFactory.get().binaryDecoder(bytes, 5, bytes.length - 5, null));
      System.out.println(json.writeValueAsString(Map.of(
          "schemaId", id, "schema", schema.getFullName(), "record", record.toString())));
    }
  }
}
