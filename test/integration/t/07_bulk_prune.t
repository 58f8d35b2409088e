# A prune of 100k entries of one dead worker runs in batches of
# presence.batch_size (1000): the entry count falls step by step, in
# multiples of 1000, with 100k leave diffs (seq without gaps per topic),
# while another session keeps tracking/untracking in the same topics with
# no error and no long wait.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use List::Util qw(max sum);
use PresenceTest;

presence_node();

my $N = 100_000;
my $TOPICS = 100;
my $batch = 1000;
my $l = PresenceTest::Listener->new;
my $admin = connect_db();
my $observer = connect_db();

# Load: a Tep heartbeat row alive now, and 100k entries over 100 topics.
my $t_load = time;
$admin->begin_work;
$admin->do(q{INSERT INTO tep_presence_worker (worker_id, last_seen_ts)
             VALUES ('bulk-dead', extract(epoch FROM now())::bigint)});
$admin->do(q{INSERT INTO tep_presence (worker_id, topic, fd, principal_id, kind, agent_id,
                 since_ts, status_state, status_note, status_until)
             SELECT 'bulk-dead', 'bulk:room:' || (g % 100), g / 100, 'user:' || g, 'human', '',
                    extract(epoch FROM now())::bigint, 'available', '', 0
               FROM generate_series(0, 99999) AS g});
$admin->commit;
$admin->do('ANALYZE tep_presence');
diag(sprintf 'loaded %d entries in %s ms', $N, ms(time - $t_load));

# The tracker: its own connection (a connection-bound worker), tracking and
# untracking in the bulk topics until told to stop.
my $stop = state_dir() . "/bulk-stop";
unlink $stop;
pipe(my $r, my $w) or die;
my $child = fork // die;
if ($child == 0) {
	close $r;
	my $dbh = connect_db();
	$dbh->{RaiseError} = 0;
	my ($ops, $errors, $first_error, @ops) = (0, 0, '');
	my $i = 0;
	while (!-e $stop) {
		my $topic = 'bulk:room:' . ($i % 100);
		my $fd = 1_000_000 + $i;
		my $t = time;
		my $a = $dbh->selectrow_array('SELECT presence_track(?, ?, ?)', undef, $topic, $fd, 'tracker');
		my $b = $dbh->selectrow_array('SELECT presence_untrack(?, ?)', undef, $topic, $fd);
		my $t2 = time;
		if (!$a || !$b) {
			$errors++;
			$first_error ||= $dbh->errstr // "track=$a untrack=$b";
		}
		push @ops, sprintf('%.4f %.4f', $t2, ($t2 - $t) / 2);
		$ops++;
		$i++;
	}
	print $w "result $ops $errors $first_error\n";
	print $w "op $_\n" for @ops;
	close $w;
	child_exit(0);
}
close $w;

# Let the tracker run a little, then the worker row dies.
$l->pause(0.5);
my $dead_leave = qr/^\d+:presence:bulk:room:\d+\{"kind":"leave",.*"worker_id":"bulk-dead"[,}]/;
my (%seq, $leaves, $bad_format, @bursts, @samples, $sample_fmt_checked);
$leaves = 0;
$bad_format = 0;
my $take = sub {
	my $q = $l->{queue};
	$l->{queue} = [];
	my $in_burst = 0;
	for my $item (@$q) {
		my $raw = $item->{raw};
		next unless $raw =~ /^\d+:presence:(bulk:room:\d+)\{/;
		my $topic = $1;
		my ($s) = $raw =~ /"seq":(\d+),"worker_id"/;
		push @{ $seq{$topic} }, $s;
		if ($raw =~ $dead_leave) {
			$leaves++;
			$in_burst++;
			if (!$sample_fmt_checked++ || $leaves % 10_000 == 0) {
				my $d = eval { diff_of($item) };
				$bad_format++ unless $d && $d->{topic} eq $topic && $d->{_dtopic} eq "presence:$topic";
			}
		}
	}
	push @bursts, $in_burst if $in_burst;
};
$take->();

# The observer: a process of its own counting the dead worker's entries
# every 5 ms, so that reading a burst of tens of thousands of diffs here
# never thins out its samples.
pipe(my $cr, my $cw) or die;
my $counter = fork // die;
if ($counter == 0) {
	close $cr;
	my $dbh = connect_db();
	my $sth = $dbh->prepare(q{SELECT count(*) FROM tep_presence WHERE worker_id = 'bulk-dead'});
	my @s;
	while (!-e $stop) {
		$sth->execute;
		my ($c) = $sth->fetchrow_array;
		push @s, sprintf('%.4f %d', time, $c);
		sleep 0.005;
	}
	print $cw "$_\n" for @s;
	close $cw;
	child_exit(0);
}
close $cw;

my $t0 = time;
$admin->do(q{UPDATE tep_presence_worker SET last_seen_ts = 0 WHERE worker_id = 'bulk-dead'});
my $sth = $observer->prepare(q{SELECT count(*) FROM tep_presence WHERE worker_id = 'bulk-dead'});
my ($t_zero, $t_last_leave);
my $deadline = $t0 + 90;
while (time < $deadline) {
	$l->pump(0.01);
	$take->();
	$t_last_leave = time if $leaves == $N && !$t_last_leave;
	next unless $leaves >= $N;
	$sth->execute;
	my ($c) = $sth->fetchrow_array;
	if ($c == 0) { $t_zero = time; last }
}
my $t_end = time;
open my $fh, '>', $stop or die;
close $fh;
my $result = <$r>;
my @ops = map { [split ' ', substr($_, 3)] } grep { /^op / } <$r>;
close $r;
waitpid $child, 0;
for (<$cr>) {
	my ($t, $c) = split ' ';
	next if $t < $t0;
	push @samples, [$t - $t0, $c];
	$t_zero = $t if $c == 0 && (!$t_zero || $t < $t_zero);
}
close $cr;
waitpid $counter, 0;
unlink $stop;

# The prune.
is($leaves, $N, "$N leave diffs for the dead worker");
is($bad_format, 0, 'sampled leave diffs decode as Tep wire format');
ok($t_zero, 'its entries are all gone') and
  diag(sprintf 'prune of %d entries: entries gone after %s ms, last leave diff after %s ms',
	$N, ms($t_zero - $t0), ms(($t_last_leave // $t_end) - $t0));
my %distinct;
$distinct{ $_->[1] }++ for grep { $_->[1] > 0 && $_->[1] < $N } @samples;
my @mid = sort { $b <=> $a } keys %distinct;
cmp_ok(scalar @mid, '>=', 3, 'the count fell step by step: ' . scalar(@mid) . ' distinct intermediate counts seen (not one transaction)');
my @odd = grep { $_ % $batch } @mid;
is_deeply(\@odd, [], "every intermediate count is a multiple of batch_size ($batch)");
diag(sprintf 'bulk prune: %d count samples, %d distinct intermediate counts, leave diffs arrived in %d reads (largest %d)',
	scalar @samples, scalar @mid, scalar @bursts, max(@bursts) // 0);
is($admin->selectrow_array(q{SELECT count(*) FROM tep_presence_worker WHERE worker_id = 'bulk-dead'}), 0,
	'the dead worker row is gone');

# seq per topic: 1..N, no gaps, no duplicates (tracker joins/leaves included).
$l->pause(0.3);
$take->();
my @gappy = grep {
	my @s = sort { $a <=> $b } @{ $seq{$_} };
	!(@s && $s[0] == 1 && $s[-1] == @s && (grep { $s[$_] != $_ + 1 } 0 .. $#s) == 0)
} sort keys %seq;
is(scalar(keys %seq), $TOPICS, "diffs seen in all $TOPICS topics");
is_deeply(\@gappy, [], 'every topic: seq 1..N without gaps as the listener saw them');

# The tracker.
my ($ops, $errors, $first_error) = $result =~ /^result (\d+) (\d+) ?(.*)$/;
ok(defined $ops, 'the tracker reported') or diag("tracker said: " . ($result // 'nothing'));
is($errors, 0, 'tracking/untracking in the same topics never failed') or diag("first error: $first_error");
my @during = grep { $_->[0] >= $t0 && $_->[0] <= ($t_zero // $t_end) } @ops;
cmp_ok(scalar @during, '>=', 20, 'the tracker kept working during the prune: ' . scalar(@during) . ' track+untrack rounds');
my $max_wait = max(map { $_->[1] } @during) // 0;
my $mean_wait = @during ? sum(map { $_->[1] } @during) / @during : 0;
diag(sprintf 'tracker during the prune: %d rounds, op latency mean %s ms, max %s ms',
	scalar @during, sprintf('%.1f', $mean_wait * 1000), ms($max_wait));
cmp_ok($max_wait, '<', 1.0, 'no track/untrack waited 1 s or more for the prune');
server_log_ok();
done_testing;
