// The lab's Java workloads (oomscope lab java-offheap | java-heap), run by `java OomscopeLab.java MODE`
// inside the lab's sandbox cgroup. They fill it over seconds, as a leak does, until the kernel kills
// the JVM.
//   offheap: the heap stays small (a few MiB kept) while direct buffers, outside the heap, grow:
//            the kill a heap dashboard cannot explain.
//   heap:    the heap itself grows into the cgroup's limit (-Xmx set above the limit).
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

public class OomscopeLab {
    public static void main(String[] args) throws Exception {
        String mode = args.length > 0 ? args[0] : "offheap";
        int stepMiB = args.length > 1 ? Integer.parseInt(args[1]) : 4;
        long pauseMs = args.length > 2 ? Long.parseLong(args[2]) : 100;
        List<Object> kept = new ArrayList<>();
        for (int i = 0; i < 4; i++) kept.add(new byte[1 << 20]);   // a small, steady heap
        System.out.println("ready " + ProcessHandle.current().pid());
        System.out.flush();
        for (long i = 0; ; i++) {
            if (mode.equals("heap")) {
                byte[] b = new byte[stepMiB << 20];
                for (int j = 0; j < b.length; j += 4096) b[j] = 1;
                kept.add(b);
            } else {
                ByteBuffer d = ByteBuffer.allocateDirect(stepMiB << 20);   // zero-filled: every page touched
                kept.add(d);
            }
            Thread.sleep(pauseMs);
        }
    }
}
