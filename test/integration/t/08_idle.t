# Idle tick cost: with nothing to do (live entries only), the worker scans
# no table (seq_scan of tep_presence and tep_presence_worker does not move)
# and writes nothing, over ~25 ticks at 200 ms and ~2000 ticks at 10 ms;
# its memory does not grow (pg_log_backend_memory_contexts "Grand total",
# VmRSS); it logs nothing per tick.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use PresenceTest;

presence_node();

my $l = PresenceTest::Listener->new;
my $admin = connect_db();
my $pid = worker_pid($admin);
ok($pid, "worker pid $pid");

# Idle, not empty: a live connection-bound worker, a live leased worker, a
# fresh Tep row, and statuses expiring much later.
my $app = connect_db();
my $bound = $app->selectrow_array('SELECT presence_worker_start()');
$app->selectrow_array(q{SELECT presence_track('idle:room', ?, 'user:1')}, undef, $_) for 1 .. 3;
$app->selectrow_array(q{SELECT presence_set_status('idle:room', 1, 'busy', '', ?)}, undef, now_s() + 3600);
$app->selectrow_array(q{SELECT presence_worker_start('idle-leased', '1 hour')});
$app->selectrow_array(q{SELECT presence_track('idle:room', 1, 'user:2', 'human', '', 'idle-leased')});
$app->do(q{INSERT INTO tep_presence_worker (worker_id, last_seen_ts) VALUES ('idle-tep', extract(epoch FROM now())::bigint)});
$app->do(q{INSERT INTO tep_presence (worker_id, topic, fd, principal_id, since_ts) VALUES ('idle-tep', 'idle:room', 1, 'user:3', 0)});
$admin->do('ANALYZE tep_presence');
$admin->do('ANALYZE tep_presence_worker');

my $clk = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
sub cpu_s {
	open my $fh, '<', "/proc/$pid/stat" or return undef;
	my $s = <$fh>;
	$s =~ s/^.*\) //;
	my @f = split ' ', $s;
	return ($f[11] + $f[12]) / $clk;    # utime + stime
}
sub rss_kb {
	open my $fh, '<', "/proc/$pid/status" or return undef;
	while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
	return undef;
}
sub stats {
	$admin->do('SELECT pg_stat_clear_snapshot()');
	my $rows = $admin->selectall_hashref(q{
		SELECT relname, seq_scan, coalesce(idx_scan, 0) AS idx_scan,
		       n_tup_ins + n_tup_upd + n_tup_del AS writes
		  FROM pg_stat_user_tables
		 WHERE relname IN ('tep_presence', 'tep_presence_worker', 'presence_topic_seq')}, 'relname');
	$rows->{_xact}{''} = $admin->selectrow_array(
		q{SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()});
	$rows->{_t} = time;
	return $rows;
}
sub delta {
	my ($a, $b, $rel, $col) = @_;
	return $b->{$rel}{$col} - $a->{$rel}{$col};
}
# Log the worker's memory contexts; returns its "Grand total" bytes (and
# bytes used) less what lives in TopTransactionContext: the dump is taken
# at an interrupt check, possibly in the middle of a tick's query, whose
# executor memory is freed at its commit and is no growth across ticks.
sub grand_total {
	my $off = log_offset();
	$admin->do('SELECT pg_log_backend_memory_contexts(?)', undef, $pid);
	my $deadline = time + 5;
	while (time < $deadline) {
		my $text = log_since($off);
		if ($text =~ /\[$pid\] presence worker LOG:  Grand total: (\d+) bytes in \d+ blocks; \d+ free \(\d+ chunks\); (\d+) used/) {
			my ($total, $used) = ($1, $2);
			my $in_xact = 0;
			for my $line (split /\n/, $text) {
				next unless $line =~ /\[$pid\] presence worker LOG:  level: (\d+); (.*)$/;
				my ($level, $rest) = ($1, $2);
				$in_xact = ($rest =~ /^TopTransactionContext:/) if $level <= 1;
				next unless $in_xact && $rest =~ /(\d+) total in \d+ blocks; \d+ free \(\d+ chunks\); (\d+) used/;
				$total -= $1;
				$used -= $2;
			}
			return ($total, $used);
		}
		sleep 0.05;
	}
	return;
}

$l->pause(1.5);    # the setup is digested and its stats flushed
$l->drain;
my $log_off = log_offset();

# Phase 1: ~25 ticks at 200 ms.
my $s0 = stats();
my ($c0, $tc0) = (cpu_s(), time);
$l->pause(5);
my ($c1, $tc1) = (cpu_s(), time);
$l->pause(1.2);    # stats are flushed at most once a second
my $s1 = stats();
my $ticks1 = int(($tc1 - $tc0) / 0.2 + 0.5);
my $stat_ticks1 = ($s1->{_t} - $s0->{_t}) / 0.2;
for my $rel (qw(tep_presence tep_presence_worker)) {
	is(delta($s0, $s1, $rel, 'seq_scan'), 0, "200 ms, ~$ticks1 idle ticks: no seq scan of $rel");
}
is(delta($s0, $s1, 'tep_presence', 'writes') + delta($s0, $s1, 'tep_presence_worker', 'writes')
	+ delta($s0, $s1, 'presence_topic_seq', 'writes'), 0, '  and no writes');
my $idx1 = delta($s0, $s1, 'tep_presence', 'idx_scan') + delta($s0, $s1, 'tep_presence_worker', 'idx_scan');
diag(sprintf 'idle tick cost at 200 ms: %.1f index scans/tick (%s), %.2f transactions/tick, CPU %.2f ms/tick',
	$idx1 / $stat_ticks1,
	join(', ', map { "$_ " . delta($s0, $s1, $_, 'idx_scan') } qw(tep_presence tep_presence_worker)),
	delta($s0, $s1, '_xact', '') / $stat_ticks1, ($c1 - $c0) * 1000 / $ticks1) if defined $c0;
is(scalar($l->drain), 0, '  no diffs');

# Phase 2: ~2000 ticks at 10 ms (crosses the 10 s full liveness check).
# Memory: a first sample, ~1000 ticks of warm-up (lazily prepared plans),
# then ~1000 more ticks that must not grow it.
set_gucs($admin, 'presence.sweep_interval' => '10ms');
$l->pause(1.5);
my $s2 = stats();
my $c2 = cpu_s();
my $t2 = time;
my ($m0, $u0) = grand_total();
$l->pause(10);
my ($m1, $u1) = grand_total();
ok($m1, "memory contexts logged: Grand total $m1 bytes ($u1 used)");
my $r1 = rss_kb();
my $tm1 = time;
$l->pause(10);
my ($m2, $u2) = grand_total();
my $r2 = rss_kb();
my $mticks = int((time - $tm1) / 0.01);
my $c3 = cpu_s();
my $dt = time - $t2;
$l->pause(1.2);
my $s3 = stats();
my $ticks2 = int($dt / 0.01);
my $stat_ticks2 = ($s3->{_t} - $s2->{_t}) / 0.01;
for my $rel (qw(tep_presence tep_presence_worker)) {
	is(delta($s2, $s3, $rel, 'seq_scan'), 0, "10 ms, ~$ticks2 idle ticks: no seq scan of $rel");
}
my $idx2 = delta($s2, $s3, 'tep_presence', 'idx_scan') + delta($s2, $s3, 'tep_presence_worker', 'idx_scan');
my $xacts = delta($s2, $s3, '_xact', '');
diag(sprintf 'idle tick cost at 10 ms: ~%d ticks in %.1f s (~%d transactions), %.2f index scans/tick, CPU %.3f ms/tick (%.1f%% of a core)',
	$ticks2, $dt, $xacts, $idx2 / $stat_ticks2, ($c3 - $c2) * 1000 / $ticks2, ($c3 - $c2) * 100 / $dt);
ok($m2, "memory contexts logged again: Grand total $m2 bytes ($u2 used)");
diag(sprintf 'worker memory: Grand total %d (start) -> %d (after ~1000 ticks) -> %d bytes (after ~%d more); used %d -> %d -> %d; VmRSS %d -> %d kB',
	$m0 // 0, $m1 // 0, $m2 // 0, $mticks, $u0 // 0, $u1 // 0, $u2 // 0, $r1 // 0, $r2 // 0);
cmp_ok($m2 // 1e12, '<=', $m1 // 0, "  the worker's memory contexts did not grow over ~$mticks idle ticks");
cmp_ok($r2 // 1e12, '<=', ($r1 // 0) + 512, '  VmRSS stable (within 512 kB)');

reset_gucs($admin, 'presence.sweep_interval');
$l->pause(0.5);
my $log = log_since($log_off);
is(scalar(() = $log =~ /presence worker started/g), 0, 'no start line during ~' . ($ticks1 + $ticks2) . ' idle ticks');
my @worker_lines = grep { /\[$pid\] presence worker / && !/memory|Grand total|level: \d+;|logging memory contexts/ } split /\n/, $log;
is_deeply(\@worker_lines, [], 'the worker logged nothing else per tick');
is_deeply([worker_log_problems($log)], [], 'no error or crash');
is(worker_pid($admin), $pid, 'same worker process');

# cleanup
$app->selectrow_array('SELECT presence_worker_stop(?)', undef, $bound);
$app->selectrow_array(q{SELECT presence_worker_stop('idle-leased')});
$app->do(q{DELETE FROM tep_presence_worker WHERE worker_id = 'idle-tep'});
$l->pause(0.5);
is($admin->selectrow_array(q{SELECT count(*) FROM tep_presence WHERE topic = 'idle:room'}), 0, 'cleanup');
server_log_ok();
done_testing;
