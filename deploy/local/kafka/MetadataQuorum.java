// `kafka.sh quorum`: which node is the KRaft active controller (the metadata quorum's
// leader), through the Admin API that kafka-metadata-quorum.sh uses (DescribeQuorum,
// KIP-595/836). kafkajs has no such request, and the tools jar would pull in Kafka Connect,
// so the JVM runs this one file from source against the broker's own kafka-clients jar.
//
//   java -cp '<libs>/*' MetadataQuorum.java host:port[,host:port...]
// prints:
//   leader <id> epoch <n> highWatermark <offset>
//   voter <id> logEndOffset <offset> lastCaughtUpMs <ms>     (one line per voter)
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.QuorumInfo;

public class MetadataQuorum {
  public static void main(String[] args) throws Exception {
    if (args.length != 1) {
      System.err.println("usage: MetadataQuorum host:port[,host:port...]");
      System.exit(2);
    }
    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(AdminClientConfig.CLIENT_ID_CONFIG, "ktrail-quorum");
    props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
    try (Admin admin = Admin.create(props)) {
      QuorumInfo quorum = admin.describeMetadataQuorum().quorumInfo().get();
      System.out.println(
          "leader " + quorum.leaderId() + " epoch " + quorum.leaderEpoch()
              + " highWatermark " + quorum.highWatermark());
      for (QuorumInfo.ReplicaState voter : quorum.voters()) {
        System.out.println(
            "voter " + voter.replicaId() + " logEndOffset " + voter.logEndOffset()
                + " lastCaughtUpMs " + voter.lastCaughtUpTimestamp().orElse(-1L));
      }
    }
  }
}
