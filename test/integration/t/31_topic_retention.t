# The background worker's retention of idle topics under churn
# (presence.topic_retention = 1s): a writer keeps 5 live topics busy and
# uses short-lived topics once each (track, untrack) for a few seconds.
# While it runs, no live topic's seq row may ever be missing; after it, the
# short-lived topics' rows go within a few walks, the floor is the highest
# of their seqs, and one of them coming back continues above it.  A
# listener sees no seq repeat in any topic.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use PresenceTest;

presence_node(conf => ["presence.topic_retention = '1s'"]);

my $SECONDS = 4;
my @LIVE = map { "live:$_" } 1 .. 5;
my $admin = connect_db();
my $l = PresenceTest::Listener->new;
my $stop = state_dir() . '/retention-stop';
unlink $stop;

$admin->selectrow_array(q{SELECT presence_worker_start('gw-keep', '1 hour')});
$admin->selectrow_array(q{SELECT presence_track(?, 0, 'keeper', worker_id => 'gw-keep')}, undef, $_)
  for @LIVE;

my $child = fork // die "fork: $!";
if ($child == 0) {
	my $dbh = connect_db();
	$dbh->selectrow_array(q{SELECT presence_worker_start('gw-churn', '1 hour')});
	my $i = 0;
	while (!-e $stop) {
		my $live = $LIVE[ $i % @LIVE ];
		$dbh->selectrow_array(q{SELECT presence_track(?, ?, 'u', worker_id => 'gw-churn')}, undef, $live, $i);
		$dbh->selectrow_array(q{SELECT presence_untrack(?, ?, 'gw-churn')}, undef, $live, $i);
		$dbh->selectrow_array(q{SELECT presence_track(?, 1, 'u', worker_id => 'gw-churn')}, undef, "doc:$i");
		$dbh->selectrow_array(q{SELECT presence_untrack(?, 1, 'gw-churn')}, undef, "doc:$i");
		$i++;
	}
	open my $fh, '>', "$stop.count" or die;
	print $fh "$i\n";
	close $fh;
	PresenceTest::child_exit(0);
}

# Watch the live topics' rows while the churn and the worker's walks run.
my ($checks, $missing, $removed_seen) = (0, 0, 0);
my $end = time + $SECONDS;
while (time < $end) {
	my $present = $admin->selectrow_array(
		q{SELECT count(*) FROM presence_topic_seq WHERE topic = ANY (?)}, undef, \@LIVE);
	$missing++ if $present != @LIVE;
	$removed_seen ||= $admin->selectrow_array(q{SELECT count(*) FROM presence_topic_seq WHERE topic = ''});
	$checks++;
	$l->pump(0.05);
}
open my $fh, '>', $stop or die;
close $fh;
waitpid $child, 0;
is($? >> 8, 0, 'the churn writer ended cleanly');
open $fh, '<', "$stop.count" or die;
chomp(my $docs = <$fh>);
close $fh;
cmp_ok($docs, '>', 10, "the writer used $docs short-lived topics");
is($missing, 0, "no live topic's row was ever missing ($checks checks)");
ok($removed_seen, 'idle topics were removed while the churn ran');

# Every short-lived topic's row goes (the last ones within a few walks).
my $left;
for (1 .. 100) {
	$left = $admin->selectrow_array(q{SELECT count(*) FROM presence_topic_seq WHERE topic LIKE 'doc:%'});
	last if $left == 0;
	$l->pump(0.1);
}
is($left, 0, 'every idle topic row was removed');
is($admin->selectrow_array(q{SELECT count(*) FROM presence_topic_seq WHERE topic LIKE 'live:%'}),
	scalar @LIVE, 'the live topics keep their rows');
# The floor: the highest seq of the removed topics.  (Each new topic went
# on from the floor of its time, so later ones have higher seqs.)
$l->pause(0.3);
my ($doc_max, $doc0_max) = (0, 0);
for my $item (@{ $l->{queue} }) {
	my $d = PresenceTest::diff_of($item);
	next unless $d->{topic} =~ /^doc:/;
	$doc_max = $d->{seq} if $d->{seq} > $doc_max;
	$doc0_max = $d->{seq} if $d->{topic} eq 'doc:0' && $d->{seq} > $doc0_max;
}
my $floor = $admin->selectrow_array(q{SELECT seq FROM presence_topic_seq WHERE topic = ''});
is($floor, $doc_max, "the floor is the removed topics' highest seq ($doc_max)");

# One comes back: its join goes on from the floor, above its old seqs.
$admin->selectrow_array(q{SELECT presence_track('doc:0', 9, 'u', worker_id => 'gw-keep')});
my $back = $l->wait_for(PresenceTest::Listener::match(topic => 'doc:0', kind => 'join', fd => 9), 5);
ok($back, 'the revived topic sent its join');
if ($back) {
	is(PresenceTest::diff_of($back)->{seq}, $floor + 1, '  with the floor + 1');
	cmp_ok(PresenceTest::diff_of($back)->{seq}, '>', $doc0_max, "  above its old seqs ($doc0_max)");
}

# No topic's seq ever repeated or went back.
my (%last, $repeats);
$repeats = 0;
for my $item (@{ $l->{queue} }) {
	my $d = PresenceTest::diff_of($item);
	$repeats++ if defined $last{ $d->{topic} } && $d->{seq} <= $last{ $d->{topic} };
	$last{ $d->{topic} } = $d->{seq};
}
is($repeats, 0, 'no seq repeated in any topic (' . scalar(@{ $l->{queue} }) . ' diffs)');

server_log_ok();
done_testing();
