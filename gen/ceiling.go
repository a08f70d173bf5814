package gen

// HumanCeiling is the most likes an hour that any normal user of this
// configuration gives on average: the generator's human limit, which farm
// accounts exceed several times over. At full scale it is a minute's like
// an hour's worth (60); smaller configurations slow everyone down so that
// the farm stays a modest share of the traffic, and a stream processor's
// account threshold must follow.
func (c Config) HumanCeiling() float64 { return c.budget().humanCap * 60 }
